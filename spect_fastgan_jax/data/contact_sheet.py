"""A contact sheet of a slice data set: levels x patterns, several subjects each."""

from __future__ import annotations

import os

import numpy as np

from spect_fastgan_jax import conditions
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.outputs import atomic_write


def pick_examples(ds: SliceDataset, level: str, pattern: str, n: int) -> np.ndarray:
  """Indices of up to n slices of (level, pattern), one per subject where possible,
  alternating defect sides; deterministic (first subjects in data set order)."""
  idx = np.flatnonzero((ds.level == level) & (ds.pattern == pattern))
  _, first = np.unique(ds.subject[idx], return_index=True)
  idx = idx[np.sort(first)]
  by_side = [idx[ds.side[idx] == s] for s in conditions.SIDES]
  picked = []
  for k in range(n):
    for group in by_side:
      if len(picked) < n and k < len(group):
        picked.append(group[k])
  return np.array(sorted(picked, key=lambda i: (conditions.SIDES.index(ds.side[i]), i)), int)


def write_contact_sheet(ds: SliceDataset, path: str | os.PathLike, per_cell: int = 4,
                        cmap: str = "jet") -> str:
  """Writes a PNG: one row per level, one block of `per_cell` subjects per pattern.

  Each centre slice is scaled to its own maximum (as training normalises it) and
  shown in radiological orientation (patient's right on the image's left), the
  defect side written under unilateral slices. The file is written atomically.

  Returns:
    the path written.
  """
  # Figure without pyplot: no GUI backend and no global state.
  from matplotlib.figure import Figure

  levels = [l for l in conditions.LEVELS if np.any(ds.level == l)]
  fig = Figure(figsize=(1.1 * per_cell * len(conditions.PATTERNS) + 0.6, 1.35 * len(levels) + 0.5),
               dpi=100)
  grid = fig.add_gridspec(len(levels), len(conditions.PATTERNS) * per_cell, wspace=0.04, hspace=0.25,
                          left=0.05, right=0.995, top=1 - 0.35 / (1.35 * len(levels) + 0.5),
                          bottom=0.06)
  for r, level in enumerate(levels):
    for c, pattern in enumerate(conditions.PATTERNS):
      picked = pick_examples(ds, level, pattern, per_cell)
      for k in range(per_cell):
        ax = fig.add_subplot(grid[r, c * per_cell + k])
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
          spine.set_visible(False)
        if c == 0 and k == 0:
          ax.set_ylabel(level, fontsize=9)
        if r == 0 and k == 0:
          ax.set_title(pattern, fontsize=10, loc="left")
        if k >= len(picked):
          # A blank image keeps the cell's aspect (and its title's height) as the others.
          ax.imshow(np.ones((64, 64)), cmap="gray", vmin=0.0, vmax=1.0)
          if k == 0:
            ax.text(0.5, 0.5, "no slices", ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
          continue
        i = picked[k]
        img = ds.slices[i, 1]
        ax.imshow(img / max(float(img.max()), 1e-12), cmap=cmap, vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        if ds.side[i] != "none":
          ax.set_xlabel(f"{ds.side[i]} defect", fontsize=6, labelpad=1)
  fig.text(0.995, 0.003, "radiological view: the patient's right on the image's left; "
           "each slice scaled to its maximum", fontsize=7, ha="right", va="bottom")
  atomic_write(path, lambda f: fig.savefig(f, format="png"), suffix=".png")
  return os.fspath(path)
