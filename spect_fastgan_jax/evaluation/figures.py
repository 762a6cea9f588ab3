"""The paper's validation figures (Figs. 4-6) and the plot of metrics against epoch.

Images are shown as stored: row 0 (anterior) at the top, column 0 (the patient's
right) on the viewer's left, i.e. radiological view.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spect_fastgan_jax import conditions  # noqa: E402
from spect_fastgan_jax.evaluation import metrics, stats  # noqa: E402
from spect_fastgan_jax.evaluation.score import PER_IMAGE, Group  # noqa: E402


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def image_grid(groups: Sequence[Group], path: str, columns: int = 4) -> str:
  """Fig. 4: one row per (level, pattern) of the real group, `columns` images of each group
  side by side (the first images of each; generated indices are fixed by the seed)."""
  conds = groups[0].conditions()
  fig, axes = plt.subplots(len(conds), len(groups), squeeze=False,
                           figsize=(1.1 * columns * len(groups), 1.2 * len(conds)))
  for r, (l, p) in enumerate(conds):
    for c, g in enumerate(groups):
      ax = axes[r, c]
      imgs = g.images[g.mask(p, l)][:columns]
      strip = np.zeros((64, 64 * columns), np.float32)
      for k, im in enumerate(imgs):
        strip[:, 64 * k:64 * (k + 1)] = im
      ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
      ax.set_xticks([]), ax.set_yticks([])
      if r == 0:
        ax.set_title(g.name, fontsize=9)
      if c == 0:
        ax.set_ylabel(f"{l}\n{p}", fontsize=8)
  return _save(fig, path)


def box_plots(groups: Sequence[Group], paper: dict, path: str,
              metric_names: Sequence[str] = ("mc", "lr")) -> str:
  """Fig. 5: box-and-whisker plots of MC and LR per pattern (levels pooled), one box per
  group, with Dunnett-vs-real stars above each generated group."""
  patterns = [p for p in conditions.PATTERNS if p in paper["per_pattern"]]
  fig, axes = plt.subplots(len(metric_names), len(patterns), squeeze=False,
                           figsize=(3.2 * len(patterns), 3.0 * len(metric_names)))
  for r, m in enumerate(metric_names):
    fn, label = PER_IMAGE[m]
    for c, p in enumerate(patterns):
      ax = axes[r, c]
      present = [g for g in groups if g.mask(p).any()]
      data = [fn(g.images[g.mask(p)]) for g in present]
      ax.boxplot(data, whis=(0, 100))  # whiskers at min and max, as GraphPad's default
      ax.set_xticks(range(1, len(present) + 1), [g.name for g in present], fontsize=7, rotation=15)
      top = max(float(np.max(d)) for d in data)
      span = top - min(float(np.min(d)) for d in data) or 1.0
      dunnett = paper["per_pattern"][p][m]["dunnett_p"]
      for k, g in enumerate(present[1:], start=2):
        ax.text(k, top + 0.04 * span, stats.stars(dunnett.get(g.name, np.nan)), ha="center", fontsize=9)
      ax.set_ylim(top=top + 0.15 * span)
      if r == 0:
        ax.set_title(p)
      if c == 0:
        ax.set_ylabel(label)
  return _save(fig, path)


def mean_sd_maps(groups: Sequence[Group], path: str) -> str:
  """Fig. 6: pixel-wise mean and SD maps per (level, pattern) and group; SD maps share one
  colour scale so that less diversity shows as a darker map."""
  conds = groups[0].conditions()
  sd_max = max(float(metrics.sd_map(g.images[g.mask(p, l)]).max())
               for g in groups for l, p in conds if g.mask(p, l).sum() > 1) or 1.0
  cols = [(g, kind) for kind in ("mean", "SD") for g in groups]
  fig, axes = plt.subplots(len(conds), len(cols), squeeze=False,
                           figsize=(1.3 * len(cols), 1.35 * len(conds)))
  for r, (l, p) in enumerate(conds):
    for c, (g, kind) in enumerate(cols):
      ax = axes[r, c]
      ax.set_xticks([]), ax.set_yticks([])
      imgs = g.images[g.mask(p, l)]
      if len(imgs):
        im = metrics.mean_map(imgs) if kind == "mean" else metrics.sd_map(imgs)
        ax.imshow(im, cmap="gray" if kind == "mean" else "magma", vmin=0,
                  vmax=1 if kind == "mean" else sd_max, interpolation="nearest")
      if r == 0:
        ax.set_title(f"{g.name}\n{kind}", fontsize=7)
      if c == 0:
        ax.set_ylabel(f"{l}\n{p}", fontsize=7)
  return _save(fig, path)


def metrics_vs_epoch(rows: list[dict], best: int | None, path: str,
                     columns: Sequence[tuple[str, str]]) -> str:
  """--mode=select: one panel per (column, label) of `rows` against epoch; the chosen
  epoch marked by a vertical line."""
  epochs = [r["epoch"] for r in rows]
  fig, axes = plt.subplots(len(columns), 1, sharex=True, squeeze=False,
                           figsize=(6.5, 1.7 * len(columns)))
  for ax, (col, label) in zip(axes[:, 0], columns):
    values = np.array([r.get(col, np.nan) for r in rows], np.float64)
    if col.endswith("_p"):
      # P-values span hundreds of decades; scipy returns 0 below ~1e-300.
      values = np.maximum(values, 1e-300)
      ax.set_yscale("log")
    ax.plot(epochs, values, marker="o", ms=3)
    ax.set_ylabel(label, fontsize=8)
    if best is not None:
      ax.axvline(best, color="tab:red", lw=1, ls="--")
    ax.grid(alpha=0.3)
  axes[-1, 0].set_xlabel("epoch" + (f" (chosen: {best})" if best is not None else ""))
  return _save(fig, path)


def closest_pairs(images: np.ndarray, rows: list[dict], training: Sequence[np.ndarray], path: str,
                  per_row: int = 4) -> str:
  """The memorisation audit's figure: each of the generated images nearest to a training
  slice (memorisation.audit's "closest" rows, nearest first) beside that training slice,
  moved into the generated image's frame (`training`), with the distance and its
  condition's near-copy threshold. Same orientation and scaling as Fig. 4."""
  n = max(len(rows), 1)
  lines = -(-n // per_row)
  fig, axes = plt.subplots(lines, 2 * per_row, squeeze=False, figsize=(1.25 * 2 * per_row, 1.55 * lines))
  for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
    ax.axis("off")
  for k, (row, train) in enumerate(zip(rows, training)):
    r, c = divmod(k, per_row)
    gen_ax, train_ax = axes[r, 2 * c], axes[r, 2 * c + 1]
    gen_ax.imshow(metrics.normalise(images[row["generated"]][None])[0], cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
    train_ax.imshow(train, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    moved = ", ".join(x for x in (f"shift {row['shift']:+d}" if row["shift"] else "",
                                  "flipped" if row["flipped"] else "") if x)
    gen_ax.set_title(f"{row['level']}/{row['pattern']}\nd {row['distance']:.3f} "
                     f"({row['ratio']:.2f}x thr)", fontsize=6)
    train_ax.set_title(f"train {row.get('subject', '')}\n{row.get('slice', '')}"
                       + (f" ({moved})" if moved else ""), fontsize=6)
  fig.suptitle("Generated (left of each pair) and its nearest training slice; d: RMS pixel "
               "distance, thr: the near-copy threshold", fontsize=7)
  return _save(fig, path)
