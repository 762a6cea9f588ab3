"""Summary numbers of a slice data set: the paper's mean counts (MC) and
left/right ratio (LR), per (level, pattern)."""

from __future__ import annotations

import numpy as np

from spect_fastgan_jax import conditions
from spect_fastgan_jax.data.dataset import SliceDataset


def normalise(images):
  """Divides each slice by its own maximum count: [..., H, W] -> the same, in [0, 1].

  The one max-normalisation of the package: training's device pipeline applies it to
  JAX arrays (traced or not), evaluation to NumPy arrays (returned as float32).
  """
  if not hasattr(images, "at"):  # NumPy arrays and sequences; JAX arrays have `.at`
    images = np.asarray(images, np.float32)
  peak = images.max(axis=(-2, -1), keepdims=True)
  return images / peak.clip(1e-12)


def mean_counts(images: np.ndarray) -> np.ndarray:
  """images: [N, H, W] -> [N] mean of the max-normalised image (the paper's MC)."""
  return normalise(images).reshape(len(images), -1).mean(axis=1)


def lr_ratio(images: np.ndarray) -> np.ndarray:
  """images: [N, H, 64] in the dataset.py orientation -> [N] patient-left counts
  (columns 32..63) over patient-right counts (columns 0..31)."""
  images = np.asarray(images, np.float64)
  half = images.shape[-1] // 2
  left = images[..., half:].sum(axis=(-2, -1))
  right = images[..., :half].sum(axis=(-2, -1))
  return (left / np.maximum(right, 1e-12)).astype(np.float32)


def describe(ds: SliceDataset) -> list[dict]:
  """One row per (level, pattern) with slices: n, subjects, MC mean/SD, LR mean/SD
  (of the centre slices), and for unilateral the mean LR per defect side."""
  rows = []
  for level in conditions.LEVELS:
    for pattern in conditions.PATTERNS:
      m = (ds.level == level) & (ds.pattern == pattern)
      if not m.any():
        continue
      centre = ds.slices[m, 1]
      mc, lr = mean_counts(centre), lr_ratio(centre)
      row = {"level": level, "pattern": pattern, "n": int(m.sum()),
             "subjects": int(len(np.unique(ds.subject[m]))),
             "counts_mean": float(centre.mean()), "mc_mean": float(mc.mean()),
             "mc_sd": float(mc.std()), "lr_mean": float(lr.mean()), "lr_sd": float(lr.std())}
      for side in ("left", "right"):
        s = ds.side[m] == side
        if s.any():
          row[f"lr_{side}_defect"] = float(lr[s].mean())
      rows.append(row)
  return rows


def format_table(rows: list[dict]) -> str:
  """describe()'s rows as a fixed-width text table."""
  lines = [f"{'level':5} {'pattern':10} {'n':>4} {'subj':>4} {'counts':>7} {'MC':>13} "
           f"{'LR':>13} {'LR left-def':>11} {'LR right-def':>12}"]
  for r in rows:
    lines.append(
        f"{r['level']:5} {r['pattern']:10} {r['n']:4d} {r['subjects']:4d} {r['counts_mean']:7.1f} "
        f"{r['mc_mean']:6.3f}+/-{r['mc_sd']:.3f} {r['lr_mean']:6.3f}+/-{r['lr_sd']:.3f} "
        f"{r.get('lr_left_defect', float('nan')):11.3f} {r.get('lr_right_defect', float('nan')):12.3f}")
  return "\n".join(lines)
