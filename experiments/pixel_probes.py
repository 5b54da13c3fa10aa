r"""The simplest reference for the SimCLR tables: the same probes on raw pixels.

Weighted kNN (k = 20, cosine) and the L2 logistic regression of
`labeljax.selfsup.probes`, fitted on the pixels of the labeled examples that
each seed's run draws (every training label for `all`), scored on the test
set. A pretrained encoder is worth something where it beats these.

  LABELJAX_RAW_DATA_DIR=../shared/data python -m experiments.pixel_probes \
      --datasets=mnist,fashion_mnist --labels=40,100,250,-1 --seeds=0,1,2 \
      --output=results/simclr_pixel_reference.md
"""

import sys

from absl import app
from absl import flags
import numpy as np

from experiments.configs import simclrv2
from labeljax.selfsup import probes
from labeljax.train import trainer

_DATASETS = flags.DEFINE_list("datasets", ["mnist", "fashion_mnist"], "Data sets.")
_LABELS = flags.DEFINE_list("labels", ["40", "100", "250", "-1"],
                            "Label budgets (-1: every training label).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (labeled draws).")
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file to write.")


def main(argv):
  del argv
  header = ["", *(f"num_labels={n}" for n in _LABELS.value)]
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  for dataset in _DATASETS.value:
    rows = {"kNN": [], "linear": []}
    for num_labels in _LABELS.value:
      scores = {"kNN": [], "linear": []}
      for seed in _SEEDS.value if num_labels != "-1" else _SEEDS.value[:1]:
        # The labeled examples the SimCLRv2 run of this seed and budget sees.
        data = trainer.load_data(simclrv2.get_config(
            f"dataset={dataset},num_labels={num_labels},seed={seed}"))
        labeled = data.dataset.train.take(data.split.labeled)
        test = data.dataset.test
        flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0
        classes = data.dataset.info.num_classes
        knn = probes.knn_predict(flat(labeled.inputs), labeled.labels, flat(test.inputs),
                                 classes)
        linear = probes.linear_probe(flat(labeled.inputs), labeled.labels,
                                     flat(test.inputs), classes).argmax(1)
        scores["kNN"].append(100 * np.mean(knn == test.labels))
        scores["linear"].append(100 * np.mean(linear == test.labels))
      for name, values in scores.items():
        rows[name].append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
    for name, entries in rows.items():
      lines.append(f"| {dataset}: {name} on pixels | " + " | ".join(entries) + " |")
  command = " ".join(["python -m experiments.pixel_probes"] + sys.argv[1:])
  text = ("\n".join(lines) + f"\n\nTest accuracy (%), mean ± std over seeds "
          f"{','.join(_SEEDS.value)} (one draw for every label). Regenerate with:"
          f"\n\n    {command}\n")
  print(text)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      f.write(text)


if __name__ == "__main__":
  app.run(main)
