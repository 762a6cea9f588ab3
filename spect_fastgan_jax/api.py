"""Synthetic slices from a trained run, inside your own Python code.

    sampler = Sampler.load("runs/dataset_a_cpu")                 # newest saved epoch
    images = sampler.generate("BG", "unilateral", n=16, seed=0)  # [16, 64, 64] in [0, 1]

An image depends only on (checkpoint, seed, index), and `generate` returns the
image that `launch.py --mode=sample` writes for the same epoch, seed and sample
index, bit for bit: both restore the same sampler checkpoint, draw the latent
vector and noise from `fold_in(PRNGKey(seed), index)` and run the compiled
program of sample.py, padded to the run's `sample.batch_size`. (A program of
another batch size may round the last bit differently.)

No flags, no globals: everything a Sampler needs is read from its workdir
(config.json and the sampler checkpoints), so several can live side by side.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from spect_fastgan_jax import checkpoints, conditions as conditions_lib, errors, outputs
from spect_fastgan_jax import sample as sample_lib
from spect_fastgan_jax import workdir as workdir_lib

# The public NIfTI writer: [N, 64, 64] images -> one volume [64, 64, N].
write_nifti = outputs.write_nifti

# Sample indices are int32 in the compiled program, as --mode=sample writes them.
_MAX_INDEX = np.iinfo(np.int32).max


class Sampler:
  """The generator of one saved epoch of a run, restored and compiled once.

  Build one with `Sampler.load(workdir, epoch)`; then call `generate` as often as
  needed: every call reuses the same compiled program, so only the first one
  compiles. It runs on JAX's default device (the GPU if there is one).
  """

  def __init__(self, epoch: int, epochs: Sequence[int], trained_conditions: Sequence[tuple[str, str]],
               generator: sample_lib.RunGenerator, g_vars):
    """Use `Sampler.load`; this takes what it has read and restored."""
    self._epoch = int(epoch)
    self._epochs = tuple(int(e) for e in epochs)
    self._conditions = tuple(trained_conditions)
    self._generator = generator
    self._g_vars = g_vars
    config = generator.config
    self._levels = generator.levels
    self._condition_side = generator.sided
    # The batch --mode=sample runs: a program of another batch size may round the
    # last bit differently, and the images must be the ones it writes.
    self._batch_size = int(config.sample.batch_size)
    self._symmetric_flip = sample_lib.symmetric_flip(config)

  @classmethod
  def load(cls, workdir: str, epoch: int | None = None, batch_size: int | None = None,
           symmetric_flip: bool | None = None) -> "Sampler":
    """Restores the generator of `epoch` (default: the newest saved) of the run in `workdir`.

    Args:
      workdir: a run's folder (the one `launch.py --workdir` names), holding its
        config.json and checkpoints/sampler/<epoch>/.
      epoch: a saved epoch (see `epochs`); None takes the newest.
      batch_size: images per compiled call; every call computes a whole batch, so a
        smaller one is faster for a few images at a time. None: the run's
        sample.batch_size (256), the one --mode=sample uses by default; images are
        bit-identical to --mode=sample's only at the batch size it ran with (info.json).
      symmetric_flip: flip normal and bilateral images (unilateral too where the run
        was trained with augment.flip_unilateral) left/right at random, as training
        flips their real slices (sample.symmetric_flip, docs/fidelity.md). None: the
        run's config.json (False for runs saved before the field existed).

    Raises:
      errors.MissingRunError: `workdir` holds no trained run (no config.json); for a
        run of several seeds the message names their folders, `<workdir>/seed_<s>`.
      errors.CheckpointError: `epoch` has no checkpoint (the message lists the
        epochs that exist), the run has none yet, or it cannot be read.
      errors.ConfigError: `epoch` is not an integer, `batch_size` not one >= 1, or
        `symmetric_flip` not a bool.
    """
    workdir = os.fspath(workdir)
    config = workdir_lib.require_run_config(workdir)
    if batch_size is not None:
      config.sample.batch_size = batch_size
    if symmetric_flip is not None:
      if not isinstance(symmetric_flip, bool):
        raise errors.ConfigError(f"symmetric_flip must be True, False or None, got {symmetric_flip!r}")
      config.sample.symmetric_flip = symmetric_flip
    sample_lib.check_config(config.sample)
    epochs = checkpoints.sampler_epochs(workdir)
    if epoch is None:
      if not epochs:
        raise errors.CheckpointError(
            f"no sampler checkpoints in {checkpoints.checkpoint_dir(workdir, 'sampler')}: the run has "
            "not finished an epoch yet (train first: python launch.py --mode=train)")
      epoch = epochs[-1]
    elif isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
      raise errors.ConfigError(f"epoch must be an integer (a saved epoch) or None, got {epoch!r}")
    # restore names a missing epoch and lists the ones that exist.
    generator = sample_lib.RunGenerator(config, workdir)
    g_vars = generator.restore(int(epoch))
    return cls(int(epoch), epochs, _trained_conditions(workdir, config), generator, g_vars)

  @property
  def workdir(self) -> str:
    """The run's folder, as given to `load`."""
    return self._generator.workdir

  @property
  def epoch(self) -> int:
    """The epoch whose generator this Sampler holds."""
    return self._epoch

  @property
  def epochs(self) -> tuple[int, ...]:
    """Every epoch of the run with a sampler checkpoint when it was loaded, ascending."""
    return self._epochs

  @property
  def symmetric_flip(self) -> bool:
    """Whether normal and bilateral images are flipped left/right at random (`load`)."""
    return self._symmetric_flip

  @property
  def condition_side(self) -> bool:
    """Whether the run is side-conditioned (data.condition_side): `generate` then takes
    the side of a unilateral defect."""
    return self._condition_side

  @property
  def levels(self) -> tuple[str, ...]:
    """The run's anatomical levels, e.g. ("CER", "BG", "COR") for dataset 'A', ("COR",) for 'B'."""
    return self._levels

  @property
  def conditions(self) -> tuple[tuple[str, str], ...]:
    """The (level, pattern) pairs `generate` accepts: those the run had training
    slices of (its record's data_counts), else every pair of its levels."""
    return self._conditions

  def generate(self, level: str, pattern: str, n: int | None = None, seed: int = 0,
               index: Sequence[int] | np.ndarray | None = None, side: str | None = None) -> np.ndarray:
    """Images of one condition, for sample indices 0..n-1 or the given `index`.

    Args:
      level: an anatomical level of the run (`levels`), e.g. "BG".
      pattern: "normal", "unilateral" or "bilateral".
      n: how many images, for sample indices 0, 1, ..., n-1. Give `n` or `index`, not both.
      seed: the sampling seed (--config.sample.seed of --mode=sample), 0 <= seed < 2**32.
      index: [N] non-negative integer sample indices, in any order, repeats allowed.
      side: "left" or "right", the side of a unilateral defect, on a side-conditioned run
        (`condition_side`) only, where a unilateral image needs one.

    Returns:
      [N, 64, 64] float32 in [0, 1], row k the image of (this epoch, seed, index k)
      in the project's orientation (row 0 anterior, column 0 the patient's right):
      the same image, bit for bit, as --mode=sample writes for that seed and index
      (docs/api.md, "The guarantee").

    Raises:
      errors.ConditionError: an unknown level or pattern, or a condition the run
        has no training slices of (e.g. CER/bilateral); the message lists `conditions`.
        An unknown side, a side on a run that is not side-conditioned or for a pattern
        other than unilateral, or none for a unilateral image of a side-conditioned run.
      errors.ConfigError: both or neither of n and index, n < 1, an index that is not
        integers or out of 0..2**31-1, a seed out of range.
    """
    self._check_condition(level, pattern)
    side = self._check_side(pattern, side)
    index = _sample_indices(n, index)
    seed = sample_lib.check_seed(seed, "seed")
    n = len(index)
    return self._generator.rows(self._g_vars, [level] * n, [pattern] * n, index, [side or "none"] * n,
                                seed, self._batch_size)

  # The NIfTI writer of --mode=sample, here for convenience: Sampler.write_nifti(images, path).
  write_nifti = staticmethod(write_nifti)

  def _check_condition(self, level, pattern) -> None:
    """ConditionError naming `level` or `pattern` unless the run was trained on the pair."""
    if not isinstance(level, str) or level not in self._levels:
      known = isinstance(level, str) and level in conditions_lib.LEVELS
      where = "not a level of this run" if known else "unknown level"
      raise errors.ConditionError(f"{where}: {level!r}; this run's levels: {', '.join(self._levels)}")
    if not isinstance(pattern, str) or pattern not in conditions_lib.PATTERNS:
      raise errors.ConditionError(f"unknown pattern: {pattern!r}; patterns: "
                                  f"{', '.join(conditions_lib.PATTERNS)}")
    if (level, pattern) not in self._conditions:
      raise errors.ConditionError(
          f"the run in {self._generator.workdir} had no training slices of {level}/{pattern}, so its generator "
          f"never learned that condition; conditions it was trained on: "
          + ", ".join(f"{l}/{p}" for l, p in self._conditions))

  def _check_side(self, pattern: str, side) -> str | None:
    """`side` for an image of `pattern`, or ConditionError saying why it cannot be drawn."""
    if side is not None and not isinstance(side, str):
      raise errors.ConditionError(f"side must be 'left', 'right' or None, got {side!r}")
    side = sample_lib.check_side(self._generator.config, side, self._generator.workdir)
    if side is not None and pattern != "unilateral":
      raise errors.ConditionError(f"side={side!r} given for a {pattern} image; only unilateral "
                                  "defects have a side")
    if side is None and self._condition_side and pattern == "unilateral":
      raise errors.ConditionError(f"the run in {self._generator.workdir} is side-conditioned: give the side of "
                                  "the unilateral defect, side='left' or side='right'")
    return side

  def __repr__(self) -> str:
    return f"Sampler(workdir={self._generator.workdir!r}, epoch={self._epoch}, levels={self._levels})"


def _trained_conditions(workdir: str, config) -> tuple[tuple[str, str], ...]:
  """(level, pattern) pairs with training slices in the run's record, in
  conditions_lib.all_conditions order; those of the paper's Table 1 if it recorded none."""
  # The conditions --mode=sample draws by default: one reader of the record for both.
  return tuple(sample_lib.default_counts(workdir_lib.read_run_record(workdir), config.data.levels))


def _sample_indices(n, index) -> np.ndarray:
  """[N] int32 sample indices from exactly one of `n` (0..n-1) and `index`."""
  if (n is None) == (index is None):
    raise errors.ConfigError("give exactly one of n (sample indices 0..n-1) and index (an array of "
                             f"sample indices); got {'both' if n is not None else 'neither'}")
  if index is None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise errors.ConfigError(f"n must be an integer >= 1, got {n!r}")
    return np.arange(n, dtype=np.int32)
  arr = np.asarray(index)
  if arr.size == 0:
    return np.zeros((0,), np.int32)
  if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
    raise errors.ConfigError(f"index must hold integers (sample indices), got {arr.dtype} values "
                             f"such as {arr.reshape(-1)[0]!r}")
  if arr.ndim != 1:
    raise errors.ConfigError(f"index must be one-dimensional [N], got shape {list(arr.shape)}")
  if arr.min() < 0 or arr.max() > _MAX_INDEX:
    bad = arr.min() if arr.min() < 0 else arr.max()
    raise errors.ConfigError(f"sample indices must lie in 0..{_MAX_INDEX}, got {int(bad)}")
  return arr.astype(np.int32)

