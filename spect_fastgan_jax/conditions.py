"""Labels of a slice and the condition vector the networks see.

The paper's Table 2: for dataset 'A' (three anatomical levels) the condition is
two one-hot blocks, (CER, BG, COR, normal, unilateral, bilateral); for dataset 'B'
(cortex only) it is the pattern block alone, (normal, unilateral, bilateral).
In general a run trained on more than one level gets the level block, a run on a
single level does not: that block would be constant and tell the networks nothing.

With config field `data.condition_side` (opt-in; the paper has no side) the pattern
block splits unilateral by the defect's side, (normal, unilateral-left,
unilateral-right, bilateral): 7 dims for dataset 'A', 4 for 'B'.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spect_fastgan_jax.errors import ConditionError, ConfigError

LEVELS = ("CER", "BG", "COR")
PATTERNS = ("normal", "unilateral", "bilateral")
SIDES = ("none", "left", "right")
DEFECT_SIDES = ("left", "right")
# The pattern block of a side-conditioned run (data.condition_side).
SIDED_PATTERNS = ("normal", "unilateral-left", "unilateral-right", "bilateral")
# Patterns whose label a left/right flip keeps: the training augmentation flips them
# (docs/model.md, "Augmentation", step 3), as do symmetric sampling (config
# sample.symmetric_flip) and the memorisation audit's reference.
# A unilateral slice keeps its label too where the condition has no side, but its
# defect moves to the other side: it is flipped only with config augment.flip_unilateral
# (`flip_patterns`).
FLIP_SYMMETRIC = ("normal", "bilateral")

# Table 1 of the paper: slices per (level, pattern) in the training set.
TABLE1_COUNTS = {
    ("CER", "normal"): 248, ("CER", "unilateral"): 66, ("CER", "bilateral"): 0,
    ("BG", "normal"): 174, ("BG", "unilateral"): 116, ("BG", "bilateral"): 44,
    ("COR", "normal"): 129, ("COR", "unilateral"): 109, ("COR", "bilateral"): 52,
}


def check_levels(levels: Sequence[str]) -> tuple[str, ...]:
  """Validates a config's `data.levels` and returns it as a tuple in canonical order."""
  levels = tuple(levels)
  if not levels:
    raise ConfigError("config field data.levels is empty: name at least one of "
                     f"{', '.join(LEVELS)}")
  unknown = [l for l in levels if l not in LEVELS]
  if unknown:
    raise ConfigError(f"config field data.levels has unknown level(s) {unknown}; "
                     f"known levels: {', '.join(LEVELS)}")
  if len(set(levels)) != len(levels):
    raise ConfigError(f"config field data.levels repeats a level: {list(levels)}")
  return tuple(l for l in LEVELS if l in levels)


def check_condition_side(value) -> bool:
  """Validates config field data.condition_side (True or False)."""
  if not isinstance(value, bool):
    raise ConfigError(f"config field data.condition_side must be True or False, got {value!r}")
  return value


def side_conditioned(data_config) -> bool:
  """A run's data.condition_side; False where its config predates the field."""
  return check_condition_side(data_config.get("condition_side", False))


def pattern_block(condition_side: bool = False) -> tuple[str, ...]:
  """Names of the pattern block of the condition vector."""
  return SIDED_PATTERNS if condition_side else PATTERNS


def condition_dim(levels: Sequence[str], condition_side: bool = False) -> int:
  """Length of the condition vector: 6 for dataset 'A', 3 for dataset 'B' (7 and 4
  with data.condition_side)."""
  levels = check_levels(levels)
  return (len(levels) if len(levels) > 1 else 0) + len(pattern_block(condition_side))


def condition_names(levels: Sequence[str], condition_side: bool = False) -> tuple[str, ...]:
  """Name of each entry of the condition vector, in order."""
  levels = check_levels(levels)
  return (levels if len(levels) > 1 else ()) + pattern_block(condition_side)


def encode(levels: Sequence[str], level: Sequence[str], pattern: Sequence[str],
           side: Sequence[str] | None = None, condition_side: bool = False) -> np.ndarray:
  """One-hot condition vectors.

  Args:
    levels: the run's anatomical levels (config `data.levels`).
    level: [N] level label of each slice.
    pattern: [N] pattern label of each slice.
    side: [N] side label of each slice (none, left, right); needed with `condition_side`,
      where every unilateral slice must have left or right. Ignored without it.
    condition_side: the run's data.condition_side.

  Returns:
    [N, condition_dim(levels, condition_side)] float32 of 0/1.
  """
  levels = check_levels(levels)
  level = np.asarray(level).astype(str).reshape(-1)
  pattern = np.asarray(pattern).astype(str).reshape(-1)
  if level.shape != pattern.shape:
    raise ConditionError(f"level has {level.size} labels but pattern has {pattern.size}")
  blocks = []
  if len(levels) > 1:
    bad = sorted(set(level) - set(levels))
    if bad:
      raise ConditionError(f"unknown level label(s) {bad} for a run on levels {list(levels)}")
    blocks.append(level[:, None] == np.asarray(levels)[None, :])
  else:
    bad = sorted(set(level) - set(levels))
    if bad:
      raise ConditionError(f"level label(s) {bad} given to a run on level {levels[0]} only")
  bad = sorted(set(pattern) - set(PATTERNS))
  if bad:
    raise ConditionError(f"unknown pattern label(s) {bad}; known: {', '.join(PATTERNS)}")
  if condition_side:
    pattern = sided_patterns(pattern, side)
  blocks.append(pattern[:, None] == np.asarray(pattern_block(condition_side))[None, :])
  return np.concatenate(blocks, axis=1).astype(np.float32)


def sided_patterns(pattern: np.ndarray, side: Sequence[str] | None) -> np.ndarray:
  """[N] labels of SIDED_PATTERNS: unilateral becomes unilateral-left or -right;
  ConditionError for a unilateral slice without a side (or no sides at all)."""
  if side is None:
    raise ConditionError("a side-conditioned run (data.condition_side) needs the side of every "
                         "unilateral slice; none was given")
  side = np.asarray(side).astype(str).reshape(-1)
  if side.shape != pattern.shape:
    raise ConditionError(f"pattern has {pattern.size} labels but side has {side.size}")
  uni = pattern == "unilateral"
  bad = uni & ~np.isin(side, DEFECT_SIDES)
  if bad.any():
    raise ConditionError(f"{int(bad.sum())} unilateral slice(s) without a side (left or right), e.g. "
                         f"side {side[bad][0]!r}; a side-conditioned run (data.condition_side) needs "
                         "the side of every unilateral defect")
  return np.where(uni, np.char.add("unilateral-", side), pattern)


def flip_patterns(flip_unilateral: bool = False) -> tuple[str, ...]:
  """The patterns a run flips left/right (training, symmetric sampling, the memorisation
  audit): FLIP_SYMMETRIC, and unilateral with config augment.flip_unilateral."""
  return FLIP_SYMMETRIC + (("unilateral",) if flip_unilateral else ())


def flip_symmetric(cond, condition_side: bool = False, flip_unilateral: bool = False):
  """[N] bool from condition vectors [N, C] (numpy or JAX): True where the pattern is
  one of `flip_patterns(flip_unilateral)`. The pattern block is the last columns of
  every encoding (`encode`); a side-conditioned encoding never flips a unilateral."""
  names = pattern_block(condition_side)
  block = cond[:, cond.shape[1] - len(names):]
  return sum(block[:, names.index(p)] for p in flip_patterns(flip_unilateral) if p in names) > 0.5


def slot_sides(pattern: Sequence[str], side: str | None = None) -> np.ndarray:
  """[N] side labels for slots of `pattern` [N] to draw from a side-conditioned run:
  `side` for every unilateral slot if given, else left and right in turn (left
  first) over the unilateral slots, so each condition gets both sides half and half;
  none for the other patterns."""
  pattern = np.asarray(pattern).astype(str)
  out = np.full(pattern.shape, "none", dtype="<U5")
  uni = np.flatnonzero(pattern == "unilateral")
  if side is not None:
    out[uni] = side
  else:
    out[uni] = np.asarray(DEFECT_SIDES)[np.arange(len(uni)) % 2]
  return out


def expand_counts(counts: dict[tuple[str, str], int]) -> tuple[np.ndarray, np.ndarray]:
  """{(level, pattern): k} -> (level [N], pattern [N]) label arrays, each condition's k
  rows together in the dict's order: the slots a sample of those counts fills."""
  level = np.array([l for (l, p), k in counts.items() for _ in range(k)], dtype=str)
  pattern = np.array([p for (l, p), k in counts.items() for _ in range(k)], dtype=str)
  return level, pattern


def all_conditions(levels: Sequence[str]) -> list[tuple[str, str]]:
  """Every (level, pattern) pair of a run, in a fixed order (level-major)."""
  return [(l, p) for l in check_levels(levels) for p in PATTERNS]
