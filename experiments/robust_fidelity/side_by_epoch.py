"""The generator's own left share of unilateral defects at each of a run's epochs.

Where a run flips unilateral slices in training (augment.flip_unilateral), its target is
an even split, and the fidelity criterion judges the generator's own share (its images
as drawn, before any sampling mirror). This prints that share at every epoch asked for,
as --mode=evaluate draws the images (Table 1 counts, the evaluation's seed), the left
share by LR < 1 and its binomial P against an even split, pooled and per level: whether
a lean is fixed from the start or wanders from epoch to epoch.

  python experiments/robust_fidelity/side_by_epoch.py RUN_WORKDIR 60 70 80 90 100 110 120
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fidelity"))

from study_common import run_images  # noqa: E402  (sets sys.path to the repository)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("epochs", type=int, nargs="+")
  args = parser.parse_args()
  import numpy as np
  from scipy import stats
  from spect_fastgan_jax.evaluation import metrics
  _, ecfg, _, real, images = run_images(args.workdir, symmetric_flip=False)
  levels = sorted(set(real.level[real.pattern == "unilateral"].tolist()))
  print("| epoch | all: left share (P) | " + " | ".join(levels) + " |")
  print("|---" * (len(levels) + 2) + "|")
  for epoch in args.epochs:
    fake = images(epoch, int(ecfg.seed))
    cells = []
    for level in [None] + levels:
      m = (fake.pattern == "unilateral") & ((fake.level == level) if level else True)
      left = metrics.lr_ratio(fake.images[m]) < 1
      p = stats.binomtest(int(left.sum()), int(m.sum()), 0.5).pvalue
      cells.append(f"{left.mean():.2f} ({p:.3f})")
    print(f"| {epoch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  main()
