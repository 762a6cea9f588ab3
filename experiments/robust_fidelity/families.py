"""The data families of configs/data.py: each one's contact sheet and its measured statistics.

    python experiments/robust_fidelity/families.py docs/families

Simulates every family of configs/data.py FAMILIES (or loads it from the cache, as a
run does), writes <out>/<family>.png (two subjects per condition, as --mode=simulate's
contact sheet, in 64 colours) and prints a markdown table of what the families measure: per
(level, pattern) the mean of the paper's MC, the left/right ratio's SD, and for
unilateral defects the mean LR of left- and right-sided ones.
"""

import os
import sys

from PIL import Image

from configs import dataset_a
from spect_fastgan_jax.data import contact_sheet, source, stats


def main():
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  out = sys.argv[1]
  os.makedirs(out, exist_ok=True)
  from configs import data as data_config
  rows = {}
  for family in data_config.FAMILIES:
    ds = source.simulated_set(dataset_a.get_config(family).data, log=lambda m: None)
    path = contact_sheet.write_contact_sheet(ds, os.path.join(out, f"{family}.png"), per_cell=2)
    # 64 colours keep the jet scale and make each sheet about 30 kB, small enough for the docs.
    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
    rows[family] = {f"{r['level']}/{r['pattern']}": r for r in stats.describe(ds)}
  keys = list(next(iter(rows.values())))
  print("| condition | " + " | ".join(rows) + " |")
  print("|---|" + "---|" * len(rows))
  for what, name in (("mc_mean", "MC"), ("lr_sd", "LR SD")):
    for k in keys:
      print(f"| {k} {name} | " + " | ".join(f"{rows[f][k][what]:.3f}" for f in rows) + " |")
  for k in keys:
    if "lr_left_defect" in rows[next(iter(rows))][k]:
      print(f"| {k} LR left / right defect | "
            + " | ".join(f"{rows[f][k]['lr_left_defect']:.3f} / {rows[f][k]['lr_right_defect']:.3f}"
                         for f in rows) + " |")


if __name__ == "__main__":
  main()
