"""Labels of a slice and the condition vector the networks see.

The paper's Table 2: for dataset 'A' (three anatomical levels) the condition is
two one-hot blocks, (CER, BG, COR, normal, unilateral, bilateral); for dataset 'B'
(cortex only) it is the pattern block alone, (normal, unilateral, bilateral).
In general a run trained on more than one level gets the level block, a run on a
single level does not: that block would be constant and tell the networks nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spect_fastgan_jax.errors import ConditionError, ConfigError

LEVELS = ("CER", "BG", "COR")
PATTERNS = ("normal", "unilateral", "bilateral")
SIDES = ("none", "left", "right")
# Patterns whose label a left/right flip keeps: the training augmentation flips them
# (docs/model.md, "Augmentation", step 3), as do symmetric sampling (config
# sample.symmetric_flip) and the memorisation audit's reference.
# A unilateral defect would move to the other side of its label's data.
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


def condition_dim(levels: Sequence[str]) -> int:
  """Length of the condition vector: 6 for dataset 'A', 3 for dataset 'B'."""
  levels = check_levels(levels)
  return (len(levels) if len(levels) > 1 else 0) + len(PATTERNS)


def condition_names(levels: Sequence[str]) -> tuple[str, ...]:
  """Name of each entry of the condition vector, in order."""
  levels = check_levels(levels)
  return (levels if len(levels) > 1 else ()) + PATTERNS


def encode(levels: Sequence[str], level: Sequence[str], pattern: Sequence[str]) -> np.ndarray:
  """One-hot condition vectors.

  Args:
    levels: the run's anatomical levels (config `data.levels`).
    level: [N] level label of each slice.
    pattern: [N] pattern label of each slice.

  Returns:
    [N, condition_dim(levels)] float32 of 0/1.
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
  blocks.append(pattern[:, None] == np.asarray(PATTERNS)[None, :])
  return np.concatenate(blocks, axis=1).astype(np.float32)


def flip_symmetric(cond):
  """[N] bool from condition vectors [N, C] (numpy or JAX): True where the pattern is
  one of FLIP_SYMMETRIC. The pattern block is the last len(PATTERNS) columns of every
  encoding (`encode`)."""
  block = cond[:, cond.shape[1] - len(PATTERNS):]
  return sum(block[:, PATTERNS.index(p)] for p in FLIP_SYMMETRIC) > 0.5


def expand_counts(counts: dict[tuple[str, str], int]) -> tuple[np.ndarray, np.ndarray]:
  """{(level, pattern): k} -> (level [N], pattern [N]) label arrays, each condition's k
  rows together in the dict's order: the slots a sample of those counts fills."""
  level = np.array([l for (l, p), k in counts.items() for _ in range(k)], dtype=str)
  pattern = np.array([p for (l, p), k in counts.items() for _ in range(k)], dtype=str)
  return level, pattern


def all_conditions(levels: Sequence[str]) -> list[tuple[str, str]]:
  """Every (level, pattern) pair of a run, in a fixed order (level-major)."""
  return [(l, p) for l in check_levels(levels) for p in PATTERNS]
