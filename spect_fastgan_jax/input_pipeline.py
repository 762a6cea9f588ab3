"""The training set on device, and the batches each epoch draws from it.

The whole set lives on the device (938 slices of 3 x 64 x 64 float32 is 46 MB):
an epoch is a permutation drawn on device and gathered batch by batch, with no
host round trip and no input thread. The permutation depends only on the run's
key and the epoch number, so a resumed run draws the same batches as one that
never stopped.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np

from spect_fastgan_jax import conditions, rng
from spect_fastgan_jax.data import source
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.data.stats import normalise
from spect_fastgan_jax.errors import ConditionError, DataError, check_field, is_number

Array = jax.Array


@flax.struct.dataclass
class DeviceData:
  """The training set on device."""
  slices: Array    # [N, 3, 64, 64] float32, each slice max-normalised to [0, 1]
  cond: Array      # [N, C] float32 one-hot condition
  flip_ok: Array   # [N] bool, the patterns a flip keeps (conditions.flip_patterns)
  spread: Array    # [N] float32, mean |x_i - x_j| of random pairs of real slices of the
                   # slice's condition, networks' range: the mode-seeking term's yardstick
  weight: Array | None = None  # [N] float32 draw probabilities (data.condition_balance > 0);
                               # None: each slice once per epoch (the paper)


@flax.struct.dataclass
class Batch:
  """One training batch: rows of DeviceData."""
  real3: Array     # [B, 3, 64, 64] max-normalised real slices (below, centre, above)
  cond: Array      # [B, C]
  flip_ok: Array   # [B] bool
  spread: Array    # [B] the real pair distance of each slice's condition


def check_config(data_config) -> None:
  """Raises ConfigError unless data.condition_balance is a number in [0, 1],
  data.condition_side a bool and the holdout fields are valid."""
  conditions.side_conditioned(data_config)
  v = data_config.condition_balance
  check_field(is_number(v) and 0 <= v <= 1, "data.condition_balance", v, "must be a number in [0, 1]")
  source.check_holdout_config(data_config)


def device_data(ds: SliceDataset, levels, condition_balance: float = 0.0,
                condition_side: bool = False, flip_unilateral: bool = False) -> DeviceData:
  """The data set `ds`, max-normalised and encoded for a run on `levels` (with the
  defect's side where `condition_side`), as arrays; with `condition_balance` > 0 also
  the draw probability of each slice. A side-conditioned run balances the conditions
  of its condition vector: unilateral left and right count as two. `flip_ok` marks
  the patterns the augmentation may flip (unilateral too with `flip_unilateral`)."""
  slices = normalise(jnp.asarray(ds.slices))
  try:
    cond = jnp.asarray(conditions.encode(levels, ds.level, ds.pattern, ds.side, condition_side))
  except ConditionError as e:
    raise DataError(f"the training data cannot train a side-conditioned run: {e}") from e
  pattern = conditions.sided_patterns(ds.pattern, ds.side) if condition_side else ds.pattern
  flip_ok = jnp.asarray(np.isin(ds.pattern, conditions.flip_patterns(flip_unilateral)))
  spread = condition_spread(np.asarray(slices[:, 1]), ds.level, pattern)
  weight = (jnp.asarray(condition_weights(ds.level, pattern, condition_balance))
            if condition_balance > 0 else None)
  return DeviceData(slices=slices, cond=cond, flip_ok=flip_ok, spread=jnp.asarray(spread),
                    weight=weight)


def condition_weights(level, pattern, balance: float) -> np.ndarray:
  """[N] probability of drawing each slice, summing to 1.

  A condition with n_c slices is drawn in proportion to n_c ** (1 - balance): at 0 as
  often as the data has it, at 1 every condition equally often (a slice of the 44
  BG/bilateral slices then comes up 5.6x as often as one of the 248 CER/normal ones).
  """
  keys = np.char.add(np.char.add(np.asarray(level).astype(str), "/"), np.asarray(pattern).astype(str))
  _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
  w = counts[inverse].astype(np.float64) ** -float(balance)
  return (w / w.sum()).astype(np.float32)


def condition_spread(images: np.ndarray, level, pattern, pairs: int = 2000, seed: int = 0) -> np.ndarray:
  """[N] mean |x_i - x_j| over random pairs of slices of each slice's (level, pattern),
  in the networks' range [-1, 1]: how far apart two real slices of a condition are.

  images: [N, 64, 64] max-normalised to [0, 1]. A condition with one slice gets the
  mean over all conditions; the result is at least 1e-6.
  """
  draw = np.random.default_rng(seed)
  level, pattern = np.asarray(level).astype(str), np.asarray(pattern).astype(str)
  out = np.full(len(images), np.nan, np.float32)
  # Sorted: a set's order of strings changes with Python's hash seed, and the draws
  # are shared, so each process would get other spreads (and train another run).
  for key in sorted(set(zip(level, pattern))):
    idx = np.flatnonzero((level == key[0]) & (pattern == key[1]))
    if len(idx) < 2:
      continue
    i, j = draw.choice(idx, pairs), draw.choice(idx, pairs)
    keep = i != j
    out[idx] = 2.0 * np.mean(np.abs(images[i[keep]] - images[j[keep]]))
  if np.isnan(out).all():
    return np.ones(len(images), np.float32)
  out = np.where(np.isnan(out), np.nanmean(out), out)
  # Identical slices have no spread: a floor keeps the mode-seeking ratio finite.
  return np.maximum(out, 1e-6).astype(np.float32)


def steps_per_epoch(num_slices: int, batch_size: int) -> int:
  """Full batches per epoch (the last partial batch of each permutation is dropped)."""
  return num_slices // batch_size


def epoch_order(key: Array, epoch: Array, num_slices: int, batch_size: int,
                weight: Array | None = None) -> Array:
  """[steps, batch_size] slice indices of epoch `epoch` of the run with base key `key`:
  a permutation (each slice at most once), or with `weight` [N] as many draws with
  replacement at those probabilities."""
  steps = steps_per_epoch(num_slices, batch_size)
  perm_key = jax.random.fold_in(rng.stream(key, rng.EPOCH_ORDER), epoch)
  if weight is None:
    order = jax.random.permutation(perm_key, num_slices)[: steps * batch_size]
  else:
    order = jax.random.choice(perm_key, num_slices, (steps * batch_size,), replace=True, p=weight)
  return order.reshape(steps, batch_size)


def gather(data: DeviceData, idx: Array) -> Batch:
  """The batch of rows `idx` [B]."""
  return Batch(real3=data.slices[idx], cond=data.cond[idx], flip_ok=data.flip_ok[idx],
               spread=data.spread[idx])
