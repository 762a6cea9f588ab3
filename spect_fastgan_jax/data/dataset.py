"""The one in-memory and on-disk form of a SPECT slice data set (`dataset.npz`).

Orientation convention (every loader brings its input into it):
  row 0 is anterior (rows run anterior -> posterior), column 0 is the patient's
  right (radiological display: the image's left half is the patient's right
  hemisphere). The left/right ratio LR = patient-left counts / patient-right
  counts, so a left-sided defect gives LR < 1.

Arrays:
  slices  float32 [N, 3, 64, 64]  the slice below, the selected slice, the slice
                                  above (craniocaudal neighbours), in counts
  level   str [N]                 CER | BG | COR
  pattern str [N]                 normal | unilateral | bilateral
  side    str [N]                 none | left | right (the defect's side, unilateral)
  subject str [N]                 subject id; a split never puts one subject on both sides
"""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import Sequence

import numpy as np

from spect_fastgan_jax import conditions
from spect_fastgan_jax.errors import DataError  # noqa: F401  (raised here; imported from here by callers)
from spect_fastgan_jax.outputs import atomic_write

MATRIX = 64
# Every reader of a user's volume refuses one past these before reading its pixels: far
# past any SPECT (64-256 pixels a side, a few hundred slices), a larger header is a
# wrong file, or one whose whole read (DICOM) would not fit in memory.
MAX_SLICE_PIXELS = 2048 * 2048
MAX_VOXELS = 1 << 30  # 4 GiB as float32


def check_volume_size(shape: tuple[int, ...], path: str) -> None:
  """DataError naming the shape of a volume past MAX_SLICE_PIXELS or MAX_VOXELS."""
  x, y, z = (int(n) for n in shape)
  if x * y > MAX_SLICE_PIXELS or x * y * z > MAX_VOXELS:
    raise DataError(f"{path}: volume of shape {[x, y, z]} is past the reader's limit "
                    f"({MAX_SLICE_PIXELS} pixels a slice, {MAX_VOXELS} voxels in all); "
                    "a SPECT volume is far smaller: is it the right file?")


@dataclasses.dataclass(frozen=True)
class SliceDataset:
  slices: np.ndarray
  level: np.ndarray
  pattern: np.ndarray
  side: np.ndarray
  subject: np.ndarray

  def __post_init__(self):
    for name in ("level", "pattern", "side", "subject"):
      object.__setattr__(self, name, np.asarray(getattr(self, name)).astype(str))
    object.__setattr__(self, "slices", np.asarray(self.slices, dtype=np.float32))

  def __len__(self) -> int:
    return int(self.slices.shape[0])

  def subset(self, mask_or_index) -> "SliceDataset":
    return SliceDataset(**{f.name: getattr(self, f.name)[mask_or_index]
                           for f in dataclasses.fields(self)})

  @staticmethod
  def concat(parts: Sequence["SliceDataset"]) -> "SliceDataset":
    """The rows of `parts`, one after another."""
    return SliceDataset(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                           for f in dataclasses.fields(SliceDataset)})

  def counts(self) -> dict[tuple[str, str], int]:
    """Number of slices per (level, pattern)."""
    return {(l, p): int(np.sum((self.level == l) & (self.pattern == p)))
            for l in conditions.LEVELS for p in conditions.PATTERNS}

  def validate(self, source: str = "data set") -> "SliceDataset":
    """Checks shapes, labels and values; raises DataError naming `source` and the row."""
    s = self.slices
    if s.ndim != 4 or s.shape[1:] != (3, MATRIX, MATRIX):
      raise DataError(f"{source}: slices must have shape [N, 3, {MATRIX}, {MATRIX}], got {list(s.shape)}")
    n = s.shape[0]
    if n == 0:
      raise DataError(f"{source}: the data set is empty")
    for name, known in (("level", conditions.LEVELS), ("pattern", conditions.PATTERNS),
                        ("side", conditions.SIDES), ("subject", None)):
      arr = getattr(self, name)
      if arr.shape != (n,):
        raise DataError(f"{source}: '{name}' must have shape [{n}], got {list(arr.shape)}")
      if known is not None:
        bad = np.flatnonzero(~np.isin(arr, known))
        if bad.size:
          raise DataError(f"{source}: row {bad[0]}: unknown {name} label {arr[bad[0]]!r}; "
                          f"known: {', '.join(known)}")
    finite = np.isfinite(s).reshape(n, -1).all(axis=1)
    if not finite.all():
      raise DataError(f"{source}: row {int(np.flatnonzero(~finite)[0])}: slices hold NaN or Inf")
    negative = (s < 0).reshape(n, -1).any(axis=1)
    if negative.any():
      raise DataError(f"{source}: row {int(np.flatnonzero(negative)[0])}: slices hold negative counts")
    empty = (s.reshape(n, 3, -1).max(axis=2) <= 0).any(axis=1)
    if empty.any():
      raise DataError(f"{source}: row {int(np.flatnonzero(empty)[0])}: a slice is all zero "
                      "(it cannot be normalised by its maximum)")
    return self

  def save(self, path: str | os.PathLike) -> None:
    """Writes the npz atomically: a failure never leaves a half-written file at `path`."""
    atomic_write(path, lambda f: np.savez(f, slices=self.slices, level=self.level,
                                          pattern=self.pattern, side=self.side,
                                          subject=self.subject), suffix=".npz")


def missing_reason(path: str, default: str) -> str:
  """Why `path`, which os.path.exists says is not there, cannot be opened: a symbolic
  link loop, a link to a missing target, no permission to look, else `default`."""
  try:
    os.stat(path)
  except OSError as e:
    if e.errno == errno.ELOOP:
      return "a symbolic link loop (a link that leads back to itself), not a file"
    if os.path.islink(path):
      return f"a broken symbolic link (its target {os.readlink(path)!r} does not exist)"
    if e.errno in (errno.EACCES, errno.EPERM):
      return f"cannot be looked at ({e.strerror})"
  return default


def load(path: str | os.PathLike) -> SliceDataset:
  """Reads and validates a dataset.npz."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f"{path}: {missing_reason(path, 'no such data set file')}")
  try:
    with np.load(path, allow_pickle=False) as z:
      missing = [k for k in ("slices", "level", "pattern", "side", "subject") if k not in z.files]
      if missing:
        raise DataError(f"{path}: missing array(s) {missing}")
      ds = SliceDataset(slices=z["slices"], level=z["level"], pattern=z["pattern"],
                        side=z["side"], subject=z["subject"])
  except DataError:
    raise
  except ValueError as e:
    if "pickled" not in str(e):
      raise DataError(f"{path}: cannot read the data set ({e})") from e
    # Never loaded unsafely: a dataset.npz holds plain arrays only.
    raise DataError(f"{path}: not a dataset.npz of plain arrays (it holds Python objects, or is not "
                    "an npz archive at all)") from e
  except Exception as e:  # zipfile, pickle and value errors of a corrupt file
    raise DataError(f"{path}: cannot read the data set ({type(e).__name__}: {e})") from e
  return ds.validate(path)


def subject_split(ds: SliceDataset, holdout_fraction: float, seed: int) -> np.ndarray:
  """[N] bool, True for slices of held-out subjects: round(holdout_fraction x the
  subjects) of each pattern, at least one and at most all but one where a pattern has two
  or more (a subject's first slice decides its pattern), so every pattern with two
  subjects or more is represented in both parts.
  holdout_fraction 0 holds out nothing."""
  if holdout_fraction == 0:
    return np.zeros(len(ds), bool)
  rng = np.random.default_rng(seed)
  subjects, first = np.unique(ds.subject, return_index=True)
  held = set()
  for p in conditions.PATTERNS:
    group = subjects[ds.pattern[first] == p]
    if len(group) < 2:
      continue
    # At least one held out, and at least one kept: both parts show every pattern.
    k = min(len(group) - 1, max(1, int(round(holdout_fraction * len(group)))))
    held.update(rng.permutation(group)[:k].tolist())
  return np.isin(ds.subject, sorted(held))


def select_levels(ds: SliceDataset, levels: Sequence[str], source: str = "data set") -> SliceDataset:
  """Keeps the slices of the run's levels (dataset 'B' = COR only) and checks that
  every pattern the run conditions on has slices."""
  levels = conditions.check_levels(levels)
  out = ds.subset(np.isin(ds.level, levels))
  if len(out) == 0:
    raise DataError(f"{source}: no slices at level(s) {list(levels)} (config field data.levels)")
  # The condition vector has one entry per level of the run; a level without slices
  # would be a condition the generator never sees and still offers to sample.
  absent = [l for l in levels if not np.any(out.level == l)]
  if absent:
    raise DataError(f"{source}: no slices at level(s) {absent}, which config field data.levels "
                    f"{list(levels)} conditions on; give slices of every level or set "
                    "data.levels to the levels the data has (dataset 'B' is COR only)")
  missing = [p for p in conditions.PATTERNS if not np.any(out.pattern == p)]
  if missing:
    raise DataError(f"{source}: pattern(s) {missing} have no slices at level(s) {list(levels)}; "
                    "the run conditions on every pattern")
  return out
