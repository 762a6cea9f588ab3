"""Orbax checkpoints of a run.

Two kinds, each in its own folder under `<workdir>/checkpoints/`:
  sampler/<epoch>/  what sampling needs: generator weights and their BatchNorm /
                    spectral-norm statistics. One per epoch, never deleted (an epoch
                    a resumed run trains again replaces its own), so any epoch can
                    be chosen after training (the paper chose 826).
  train/<epoch>/    the whole training state (both networks, both Adam states,
                    statistics, step, key data) for resuming; the last few are kept.

Epochs are numbered from 1: the checkpoint of epoch k is the state after k full
epochs. Orbax writes each checkpoint to a temporary folder and renames it when
complete, so a run killed mid-write never leaves a checkpoint that looks whole.
Restores build their target on the current devices, so a checkpoint written on
a GPU restores on a CPU. What survives kills, damage and full disks:
docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp

from spect_fastgan_jax import preflight
from spect_fastgan_jax.errors import CheckpointError, check_field, is_whole

PyTree = Any


def _abstract(tree: PyTree) -> PyTree:
  """Shape/dtype target on this process's first device (in a job of several
  processes every process restores its own copy)."""
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _reason(e: BaseException, limit: int = 240) -> str:
  """One line on why a checkpoint failed: the innermost cause's first line.

  TensorStore errors carry the whole store spec (dozens of lines) in their text;
  the first line says what went wrong.
  """
  while e.__cause__ is not None:
    e = e.__cause__
  text = (str(e).strip().splitlines() or [""])[0]
  if len(text) > limit:
    text = text[:limit] + "..."
  return f"{type(e).__name__}: {text}"


@contextlib.contextmanager
def _quiet_failed_reads():
  """Keeps the reader's leftovers of a failed restore off stderr.

  When one array of a damaged checkpoint fails, orbax abandons the reads of the
  others; their coroutines then die with "Exception ignored in ..." tracebacks,
  one per array, printed at garbage collection ("Exception ignored in ...",
  asyncio's "exception was never retrieved"). The restore's own error says it
  all, so those are dropped.
  """
  hook = sys.unraisablehook
  asyncio_log = logging.getLogger("asyncio")
  was_disabled = asyncio_log.disabled
  sys.unraisablehook = lambda unraisable: None
  asyncio_log.disabled = True
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook
    asyncio_log.disabled = was_disabled


def due(epoch: int, every: int, num_epochs: int) -> bool:
  """Whether work done "every `every` epochs" falls on `epoch` (1-based): on each
  multiple of `every` and on the last epoch, `num_epochs`; never when `every` is 0.
  The rule of the sampler checkpoints, the sample grids and the monitor."""
  return bool(every) and (epoch % every == 0 or epoch == num_epochs)


def check_config(checkpoint_config) -> None:
  """Raises ConfigError naming the first bad field of `config.checkpoint`."""
  v = checkpoint_config.sampler_every_epochs
  check_field(is_whole(v) and v >= 1, "checkpoint.sampler_every_epochs", v, "must be a whole number >= 1")
  # keep_train_states is checked where it is used, by RunCheckpoints.
  RunCheckpoints.check_keep(checkpoint_config.keep_train_states)


def checkpoint_dir(workdir: str, kind: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints", kind)


def _manager(workdir: str, kind: str, max_to_keep: int | None, read_only: bool = False):
  """A manager of one kind; `read_only` opens an existing folder (None if absent) for
  listing and restoring, with no background saving."""
  directory = checkpoint_dir(workdir, kind)
  if read_only and not os.path.isdir(directory):
    return None
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, enable_async_checkpointing=not read_only,
      # A run killed mid-write leaves `<epoch>.orbax-checkpoint-tmp` folders; they are
      # never restored from, only waste disk, so a writing manager removes them.
      cleanup_tmp_directories=not read_only,
      # In a job of several processes orbax synchronises them at named barriers; the two
      # kinds save the same epoch at the same time, so their barriers need distinct names.
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=kind))
  return ocp.CheckpointManager(directory, options=options)


class RunCheckpoints:
  """Saves and restores both kinds of checkpoint of one workdir.

  Crash safety: every save goes to a temporary folder that orbax renames to
  `<epoch>` only when complete, so a listed epoch is a complete one. The sampler
  and training checkpoints of an epoch are two saves that finish in either order;
  a run killed between them has the training state of epoch k without its
  sampler checkpoint (`has_sampler`), which the resuming run writes again, or the
  other way round, which the resuming run replaces when it re-trains epoch k.
  """

  def __init__(self, workdir: str, keep_train_states: int = 3):
    self.check_keep(keep_train_states)
    self.workdir = workdir
    try:
      self._train = _manager(workdir, "train", keep_train_states)
      self._sampler = _manager(workdir, "sampler", None)
    except OSError as e:
      raise CheckpointError(f"cannot open the checkpoint folders in {os.path.abspath(workdir)}: "
                            f"{type(e).__name__}: {e}") from e

  @staticmethod
  def check_keep(keep_train_states) -> None:
    check_field(is_whole(keep_train_states) and keep_train_states >= 1,
                "checkpoint.keep_train_states", keep_train_states, "must be a whole number >= 1")

  def _write_error(self, what: str, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"writing {what} in {checkpoint_dir(self.workdir, '')} failed ({_reason(e)}); "
        "the checkpoints written before are kept: fix the cause and run the same command "
        "again to resume from the newest complete one")

  def save(self, epoch: int, train_state: PyTree | None, sampler_vars: PyTree | None) -> None:
    """Starts asynchronous saves of epoch `epoch`; `wait()` or `close()` waits for them.

    Refuses (CheckpointError, nothing of this epoch written) when the disk lacks
    room for both checkpoints uncompressed. An epoch that already has a
    checkpoint has it replaced: that happens only when a resumed run re-trains an
    epoch past the state it restored from, and the new one belongs to the run
    that goes on (on the same platform it is the same, bit for bit; a damaged one
    is healed).
    """
    items = [(m, tree) for m, tree in ((self._sampler, sampler_vars), (self._train, train_state))
             if tree is not None]
    need = sum(preflight.tree_bytes(tree) for _, tree in items)
    preflight.check_free_space(checkpoint_dir(self.workdir, ""), need,
                               f"the checkpoints of epoch {epoch}")
    for m, tree in items:
      try:
        # Orbax waits for the previous save itself; waiting first here makes its
        # error (a disk that filled up meanwhile) surface as ours.
        m.wait_until_finished()
        if epoch in m.all_steps():
          m.delete(epoch)
        # force: orbax skips a step older than its newest one, which a resumed
        # run re-training epochs past a damaged state must be able to write.
        m.save(epoch, args=ocp.args.StandardSave(tree), force=True)
      except Exception as e:
        raise self._write_error(f"the checkpoint of epoch {epoch}", e) from e

  def train_epochs(self) -> list[int]:
    """Epochs that have a (complete, perhaps damaged) training state, ascending."""
    return sorted(self._train.all_steps())

  def has_sampler(self, epoch: int) -> bool:
    return epoch in self._sampler.all_steps()

  def restore_train(self, epoch: int, like: PyTree) -> PyTree:
    try:
      with _quiet_failed_reads():
        return self._train.restore(epoch, args=ocp.args.StandardRestore(_abstract(like)))
    except Exception as e:
      raise CheckpointError(f"the training state of epoch {epoch} in {checkpoint_dir(self.workdir, 'train')} "
                            f"cannot be read ({_reason(e)}): a file is missing or damaged") from e

  def restore_latest(self, like: PyTree, log=lambda msg: None) -> tuple[int | None, PyTree]:
    """The newest training state that restores, as (epoch, state); (None, like) if none.

    A damaged newest state (a file truncated or deleted by hand) is reported and
    skipped, so training resumes from the newest intact one.
    """
    for epoch in reversed(self.train_epochs()):
      try:
        return epoch, self.restore_train(epoch, like)
      except CheckpointError as e:
        log(f"warning: skipping a damaged checkpoint: {e}")
    return None, like

  def wait(self) -> None:
    try:
      self._train.wait_until_finished()
      self._sampler.wait_until_finished()
    except Exception as e:
      raise self._write_error("a checkpoint", e) from e

  def close(self) -> None:
    try:
      self._train.close()
      self._sampler.close()
    except Exception as e:
      raise self._write_error("a checkpoint", e) from e


def sampler_epochs(workdir: str) -> list[int]:
  """Epochs that have a sampler checkpoint, ascending."""
  m = _manager(workdir, "sampler", None, read_only=True)
  if m is None:
    return []
  try:
    return sorted(m.all_steps())
  finally:
    m.close()


def check_sampler_epoch(workdir: str, epoch: int) -> list[int]:
  """The run's sampler epochs; CheckpointError listing them unless `epoch` is one."""
  epochs = sampler_epochs(workdir)
  if epoch not in epochs:
    if not epochs:
      raise CheckpointError(f"no checkpoints in {checkpoint_dir(workdir, 'sampler')}: "
                            "train first (python launch.py --mode=train)")
    raise CheckpointError(f"epoch {epoch} has no checkpoint in {checkpoint_dir(workdir, 'sampler')}; "
                          f"epochs that exist: {_ranges(epochs)}")
  return epochs


def restore_sampler(workdir: str, epoch: int, like: PyTree) -> PyTree:
  """Generator variables of `epoch`; a missing epoch's error lists the epochs that exist."""
  epochs = check_sampler_epoch(workdir, epoch)
  m = _manager(workdir, "sampler", None, read_only=True)
  try:
    with _quiet_failed_reads():
      return m.restore(epoch, args=ocp.args.StandardRestore(_abstract(like)))
  except Exception as e:
    others = [k for k in epochs if k != epoch]
    raise CheckpointError(f"the checkpoint of epoch {epoch} in {checkpoint_dir(workdir, 'sampler')} "
                          f"cannot be read ({_reason(e)}): a file is missing or damaged; choose "
                          f"another epoch (--epoch)"
                          + (f", epochs that exist: {_ranges(others)}" if others else "")) from e
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
