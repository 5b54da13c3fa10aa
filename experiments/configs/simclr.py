r"""SimCLR pretraining of the small CNN, no labels; the workdir then serves as
`init_from=WORKDIR` for fine-tuning (simclrv2.py), FixMatch (ssl.py) and a
distillation teacher (distill.py); `Pretrained.embed` gives its
representation to anything else (labeljax/train/pretrained.py).

  python -m experiments.train \
      --config=experiments/configs/simclr.py:dataset=fashion_mnist \
      --workdir=/tmp/labeljax/simclr_fashion_mnist

The encoder is the small CNN of the SSL tables (widths 16/32/64, a 128-d
embedding) under SimCLRv2's 3-layer projection head (256/256/64), trained
with NT-Xent (τ = 0.5) on two SimCLR views of each image: random resized crop
(area 0.2-1, a tighter range than ImageNet's 0.08-1 for 28-px images), no
flips for digits and clothing, brightness/contrast jitter (strength 0.5),
blur. LARS (momentum 0.9, weight decay 1e-6 on kernels only, learning rate
1.0, 10% linear warm-up, then cosine), batch 256, 5000 steps (22 epochs).
Logged: `contrastive_accuracy` on every train line, the kNN accuracy on the
1000 validation images (held out of pretraining) every `eval_every` steps
(split "monitor"), and at the end the test accuracy of a weighted kNN
(k = 20) and of a linear probe, both with every training label.

The learning rate and τ were chosen on the validation kNN accuracy of short
Fashion-MNIST runs (step 1000 of 1500: lr 1.0 with τ 0.5 0.811, with τ 0.2
0.796; lr 0.3 with τ 0.2 reached 0.763 at step 400 of 400), never on test.

Results on the 2-core CPU: results/simclr_pretrain.md (accuracies) and
results/simclr_pretrain_speed.md (wall minutes, images per second).
"""

from experiments.configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, dataset="fashion_mnist", seed=0, num_steps=5000,
                          batch_size=256, temperature=0.5, learning_rate=1.0,
                          crop_scale=0.2)
  config = common.base_config()
  config.method = "simclr"
  config.dataset = args.dataset
  config.seed = args.seed
  config.num_validation = 1000  # held out of pretraining: the monitor's queries
  config.model = "small_cnn"
  config.model_kwargs = dict(widths=(16, 32, 64), embedding_dim=128)  # CPU-sized
  config.head_widths = (256, 256, 64)
  config.batch_size = args.batch_size
  config.num_steps = args.num_steps
  config.temperature = args.temperature
  config.optimizer = dict(
      name="lars", weight_decay=1e-6, momentum=0.9, schedule="cosine",
      learning_rate=args.learning_rate,
      warmup_steps=max(1, args.num_steps // 10))
  # SimCLR's views (labeljax.augment.simclr_augment).
  config.crop_scale = (args.crop_scale, 1.0)
  config.flip = False  # digits and clothing are not mirror-symmetric classes
  config.jitter_strength = 0.5
  config.blur_prob = 0.5
  config.monitor_bank = 5000
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  return config
