"""Orbax checkpoints of a run.

Two kinds, each in its own folder under `<workdir>/checkpoints/`:
  sampler/<epoch>/  what sampling needs: generator weights and their BatchNorm /
                    spectral-norm statistics. One per epoch, never deleted, so any
                    epoch can be chosen after training (the paper chose 826).
  train/<epoch>/    the whole training state (both networks, both Adam states,
                    statistics, step, key data) for resuming; the last few are kept.

Epochs are numbered from 1: the checkpoint of epoch k is the state after k full
epochs. Orbax writes each checkpoint to a temporary folder and renames it when
complete, so a run killed mid-write never leaves a checkpoint that looks whole.
Restores build their target on the current devices, so a checkpoint written on
a GPU restores on a CPU.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

PyTree = Any


class CheckpointError(RuntimeError):
  """A checkpoint that is missing or cannot be read; the message names the epoch."""


def _abstract(tree: PyTree) -> PyTree:
  """Shape/dtype target on the current default device."""
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def checkpoint_dir(workdir: str, kind: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints", kind)


def _manager(workdir: str, kind: str, max_to_keep: int | None, read_only: bool = False):
  """A manager of one kind; `read_only` opens an existing folder (None if absent) for
  listing and restoring, with no background saving."""
  directory = checkpoint_dir(workdir, kind)
  if read_only and not os.path.isdir(directory):
    return None
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, enable_async_checkpointing=not read_only)
  return ocp.CheckpointManager(directory, options=options)


class RunCheckpoints:
  """Saves and restores both kinds of checkpoint of one workdir."""

  def __init__(self, workdir: str, keep_train_states: int = 3):
    if keep_train_states < 1:
      raise ValueError(f"config field checkpoint.keep_train_states must be >= 1, got {keep_train_states}")
    self.workdir = workdir
    self._train = _manager(workdir, "train", keep_train_states)
    self._sampler = _manager(workdir, "sampler", None)

  def save(self, epoch: int, train_state: PyTree | None, sampler_vars: PyTree | None) -> None:
    """Starts asynchronous saves of epoch `epoch`; `wait()` or `close()` waits for them."""
    if sampler_vars is not None:
      self._sampler.save(epoch, args=ocp.args.StandardSave(sampler_vars))
    if train_state is not None:
      self._train.save(epoch, args=ocp.args.StandardSave(train_state))

  def latest_train_epoch(self) -> int | None:
    return self._train.latest_step()

  def restore_train(self, epoch: int, like: PyTree) -> PyTree:
    try:
      return self._train.restore(epoch, args=ocp.args.StandardRestore(_abstract(like)))
    except Exception as e:
      raise CheckpointError(f"cannot restore the training state of epoch {epoch} from "
                            f"{checkpoint_dir(self.workdir, 'train')}: {type(e).__name__}: {e}") from e

  def restore_latest(self, like: PyTree, log=lambda msg: None) -> tuple[int | None, PyTree]:
    """The newest training state that restores, as (epoch, state); (None, like) if none.

    A damaged newest state (a file truncated or deleted by hand) is reported and
    skipped, so training resumes from the newest intact one.
    """
    for epoch in sorted(self._train.all_steps(), reverse=True):
      try:
        return epoch, self.restore_train(epoch, like)
      except CheckpointError as e:
        log(f"warning: skipping a damaged checkpoint: {e}")
    return None, like

  def wait(self) -> None:
    self._train.wait_until_finished()
    self._sampler.wait_until_finished()

  def close(self) -> None:
    self._train.close()
    self._sampler.close()


def sampler_epochs(workdir: str) -> list[int]:
  """Epochs that have a sampler checkpoint, ascending."""
  m = _manager(workdir, "sampler", None, read_only=True)
  if m is None:
    return []
  try:
    return sorted(m.all_steps())
  finally:
    m.close()


def restore_sampler(workdir: str, epoch: int, like: PyTree) -> PyTree:
  """Generator variables of `epoch`; a missing epoch's error lists the epochs that exist."""
  epochs = sampler_epochs(workdir)
  if epoch not in epochs:
    if not epochs:
      raise CheckpointError(f"no checkpoints in {checkpoint_dir(workdir, 'sampler')}: "
                            "train first (python launch.py --mode=train)")
    raise CheckpointError(f"epoch {epoch} has no checkpoint in {checkpoint_dir(workdir, 'sampler')}; "
                          f"epochs that exist: {_ranges(epochs)}")
  m = _manager(workdir, "sampler", None, read_only=True)
  try:
    return m.restore(epoch, args=ocp.args.StandardRestore(_abstract(like)))
  except Exception as e:
    raise CheckpointError(f"the checkpoint of epoch {epoch} in {checkpoint_dir(workdir, 'sampler')} "
                          f"cannot be read ({type(e).__name__}: {e})") from e
  finally:
    m.close()


def _ranges(values: list[int]) -> str:
  """[1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8'."""
  out, start = [], None
  for i, v in enumerate(values):
    if start is None:
      start = v
    if i + 1 == len(values) or values[i + 1] != v + 1:
      out.append(str(start) if start == v else f"{start}-{v}")
      start = None
  return ", ".join(out)
