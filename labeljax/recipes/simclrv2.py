"""The SimCLRv2 recipe: pretrain -> fine-tune -> distill (Chen et al., 2020).

"Big Self-Supervised Models are Strong Semi-Supervised Learners"
(https://arxiv.org/abs/2006.10029). `simclrv2(config, workdir)`
(`method=simclrv2`), each stage with its own checkpoint directory, so a killed
run resumes the stage it was in:

1. `pretrain/`: SimCLR (`labeljax.selfsup`, `config.pretrain`, a simclr.py
   config), or none when `config.init_from` names a finished pretraining
   workdir;
2. probes of the frozen encoder on the label budget: linear and kNN;
3. `finetune/`: the encoder and the first layer of the projection head, then
   a new linear classifier, trained on the labeled examples
   (`config.finetune` overrides);
4. `self_distill/` and `distill_small/`: the fine-tuned network, frozen,
   labels the unlabeled pool (soft labels at temperature τ, the distill
   family's KD loss) for a student of the same architecture and for a
   narrower one (`config.student_model_kwargs`, `config.student_head_width`);
   both start from random initialisation (`config.distill` overrides).

`results.json` holds every stage's test metrics; `test` is the self-distilled
student's.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from labeljax import models
from labeljax import parallel
from labeljax.distill import get_method as get_distill_method
from labeljax.distill import training as distill_training
from labeljax.selfsup import probes
from labeljax.selfsup import training as selfsup_training
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import pretrained as pretrained_lib
from labeljax.train import trainer
from labeljax.train.metric_writer import MetricWriter


def stage_config(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
  """`config` with a stage's overrides (e.g. `config.finetune`) on top."""
  stage = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    stage[key] = value
  return stage


def _num_parameters(model, info) -> int:
  sample = jnp.zeros((1, *info.input_shape), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), sample)["params"])
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))


def simclrv2(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrain (or `init_from`) -> probes -> fine-tune -> distill; test metrics."""
  pretrain_dir = config.get("init_from") or os.path.join(workdir, "pretrain")
  if not config.get("init_from") and not os.path.exists(
      os.path.join(pretrain_dir, "results.json")):
    # The run's data settings hold for its pretraining stage too.
    shared = {key: config.get(key) for key in ("dataset", "seed", "data_dir",
                                               "raw_data_dir", "num_data_shards",
                                               "eval_batch_size")}
    pretrain_config = stage_config(config.pretrain, shared)
    if selfsup_training.pretrain(pretrain_config, pretrain_dir).get("preempted"):
      return {"preempted": True}
  pretrained = pretrained_lib.load(pretrain_dir, dataset=config.dataset)
  data = trainer.load_data(config)
  info = data.dataset.info
  mesh = parallel.make_mesh()
  train, test = data.dataset.train, data.dataset.test
  labeled = train.take(data.split.labeled)
  writer = MetricWriter(workdir)

  # ---- Probes of the frozen encoder, fitted on the labeled examples alone.
  embed = lambda examples: pretrained.embed(examples, config.eval_batch_size, mesh)
  labeled_embedding, test_embedding = embed(labeled), embed(test)
  accuracy = lambda predicted: {"accuracy": float(np.mean(predicted == test.labels))}
  results = {
      "linear_test": accuracy(probes.linear_probe(
          labeled_embedding, labeled.labels, test_embedding, info.num_classes).argmax(1)),
      "knn_test": accuracy(probes.knn_predict(
          labeled_embedding, labeled.labels, test_embedding, info.num_classes,
          k=config.knn_k))}

  def test_metrics(model, state, stage_config):
    return trainer.evaluate(stage_config, evaluate_lib.make_predict_fn(model), state,
                            test, mesh)

  # ---- Fine-tuning from the first layer of the projection head.
  finetune_config = stage_config(config, config.finetune)
  teacher_model = pretrained.finetune_model(info.num_classes)
  teacher_state = trainer.fit(finetune_config, os.path.join(workdir, "finetune"),
                              trainer.supervised_setup(finetune_config, data, mesh),
                              teacher_model, info, mesh, data.validation, pretrained)
  if teacher_state is None:
    return {"preempted": True}
  results["finetune_test"] = test_metrics(teacher_model, teacher_state, finetune_config)

  # ---- Distillation on the unlabeled pool, into two students.
  distill_config = stage_config(config, config.distill)
  # SimCLRv2's eq. 2: cross-entropy to the teacher at temperature τ, no τ².
  kd = get_distill_method("kd", temperature=config.distill_temperature, scale_by_t2=False,
                          labeled_weight=config.distill_labeled_weight)
  teacher = distill_training.Frozen(teacher_model, teacher_state)
  students = {
      "self_distill": pretrained.finetune_model(info.num_classes),
      "distill_small": models.SimCLRNet(
          models.get_model(pretrained.spec["model"], 0, **config.student_model_kwargs),
          head_widths=(config.student_head_width,), num_classes=info.num_classes)}
  for name, student_model in students.items():
    setup = distill_training.distillation_setup(distill_config, data, mesh, kd, teacher,
                                                None, data.split.unlabeled)
    state = trainer.fit(distill_config, os.path.join(workdir, name), setup,
                        student_model, info, mesh, data.validation)
    if state is None:
      return {"preempted": True}
    results[f"{name}_test"] = test_metrics(student_model, state, distill_config)
  results["parameters"] = {name: _num_parameters(model, info) for name, model in
                           (("teacher", teacher_model), *students.items())}
  results["test"] = results["self_distill_test"]
  # Each stage's test metrics at the step its training ended (probes: 0).
  stage_steps = {"finetune": finetune_config.num_steps,
                 **{name: distill_config.num_steps for name in students}}
  for key, value in results.items():
    if key.endswith("_test") and key != "test":
      stage = key.removesuffix("_test")
      writer.write(stage_steps.get(stage, 0), "test", value, stage=stage)
  trainer.write_results(workdir, results)
  return results
