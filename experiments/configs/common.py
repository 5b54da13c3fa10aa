"""Shared config pieces: the defaults every method starts from, and arg parsing.

A config file's `get_config(arg)` takes the string after ':' in
`--config=experiments/configs/NAME.py:key=value,key=value`.
"""

import ast

import ml_collections


def parse_arg(arg: str | None, **defaults):
  """Parses "a=1,b=mnist" over `defaults`; unknown keys list the choices."""
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, text = item.partition("=")
    if not sep:
      raise ValueError(f"Config argument {item!r} is not key=value.")
    if key not in defaults:
      raise ValueError(f"Unknown config argument {key!r}; choose from {sorted(defaults)}.")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text  # A bare word such as mnist.
    values[key] = value
  return ml_collections.ConfigDict(values)


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by all methods; configs override what differs."""
  config = ml_collections.ConfigDict()
  config.method = "supervised"
  config.dataset = "adult"
  config.data_dir = None       # prepared TFDS data; default ~/.cache/labeljax/...
  config.raw_data_dir = None   # original files; default $LABELJAX_RAW_DATA_DIR
  config.seed = 0
  config.num_labels = -1       # -1: every training label
  config.num_labels_per_class = None
  config.num_validation = 0
  config.num_unlabeled = None   # None: every example neither labeled nor held out
  config.num_data_shards = 0  # 0: one global order, the same on any topology

  config.model = "mlp"
  config.model_kwargs = ml_collections.ConfigDict()
  config.batch_size = 256
  config.eval_batch_size = 1024
  config.num_steps = 1000
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-3, weight_decay=1e-4, schedule="cosine",
      warmup_steps=0, momentum=0.9, nesterov=True))
  config.ema_decay = 0.0
  config.eval_with_ema = False

  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  return config
