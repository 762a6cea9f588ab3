"""Checks run before a mode writes anything: can the workdir take the files?

A run that finds out at its first checkpoint that the disk is full or the
folder read-only has wasted its compile time; one that finds out half-way
through a write may leave junk next to good checkpoints. These checks fail
early with one line naming the folder and what is missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np

from spect_fastgan_jax.errors import PreflightError

# Space kept free beyond what a write needs: logs, metadata, file-system slack,
# and whatever else shares the disk while the run goes on.
HEADROOM_BYTES = 16 << 20


def tree_bytes(tree: Any) -> int:
  """Bytes of the arrays of a pytree (what an uncompressed checkpoint of it holds)."""
  import jax
  # shape x itemsize also covers abstract leaves (ShapeDtypeStruct), which hold no data.
  return int(sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree_util.tree_leaves(tree)))


def _existing_parent(path: str) -> str:
  """The nearest folder of `path` that exists (where disk usage can be asked)."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def free_bytes(path: str) -> int:
  return shutil.disk_usage(_existing_parent(path)).free


def _mb(n: int) -> str:
  return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def check_free_space(path: str, need_bytes: int, what: str,
                     remedy: str = "Free some space (or use another --workdir)") -> None:
  """Raises PreflightError unless the disk of `path` has `need_bytes` plus headroom free."""
  free = free_bytes(path)
  if free < need_bytes + HEADROOM_BYTES:
    raise PreflightError(
        f"not enough free disk space for {what} in {os.path.abspath(path)}: {_mb(free)} free, "
        f"about {_mb(need_bytes + HEADROOM_BYTES)} needed; nothing was written. {remedy} "
        "and run the same command again")


def planned_checkpoints(first_epoch: int, num_epochs: int, sampler_every: int,
                        keep_train_states: int) -> tuple[int, int]:
  """(sampler checkpoints, training states) that training epochs first..num_epochs
  leaves on disk: a sampler checkpoint every `sampler_every` epochs and at the last
  (never deleted), and the newest `keep_train_states` training states."""
  if first_epoch > num_epochs:
    return 0, 0
  samplers = num_epochs // sampler_every - (first_epoch - 1) // sampler_every
  if num_epochs % sampler_every:
    samplers += 1
  return samplers, min(keep_train_states, num_epochs - first_epoch + 1)


def check_checkpoint_space(path: str, first_epoch: int, checkpoint_config, num_epochs: int,
                           sampler_bytes: int, train_bytes: int, seeds: int = 1) -> None:
  """PreflightError, before training writes anything, unless the disk of `path` has
  room for every checkpoint that epochs first..num_epochs will leave (planned_checkpoints),
  at `sampler_bytes` and `train_bytes` each (tree_bytes of the networks), for each of
  `seeds` runs; the message gives the plan, what it needs and what is free."""
  every, keep = checkpoint_config.sampler_every_epochs, checkpoint_config.keep_train_states
  samplers, states = planned_checkpoints(first_epoch, num_epochs, every, keep)
  need = seeds * (samplers * sampler_bytes + states * train_bytes)
  if need:
    check_free_space(
        path, need,
        f"the run's checkpoints ({samplers} sampler checkpoints of {_mb(sampler_bytes)} for epochs "
        f"{first_epoch}..{num_epochs}, one every {every} (checkpoint.sampler_every_epochs) and the "
        f"last, and {states} training states of {_mb(train_bytes)} (checkpoint.keep_train_states)"
        + (f", for each of {seeds} seeds" if seeds > 1 else "") + ")",
        remedy="Lower num_epochs, raise checkpoint.sampler_every_epochs, free some space or use "
               "another --workdir,")


def _probe(folder: str, what: str) -> None:
  """Writes and removes a probe file in the existing `folder`; PreflightError naming
  `what` (the folder as the user knows it) if that fails."""
  try:
    fd, probe = tempfile.mkstemp(prefix=".preflight-", dir=folder)
  except OSError as e:
    raise PreflightError(f"{what} {folder} is not writable ({e.strerror or e}); nothing was "
                         "written: fix its permissions or use another --workdir") from e
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(b"\0" * 4096)
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise PreflightError(f"cannot write to {what} {folder} ({e.strerror or e}); nothing else "
                         "was written: free some space or use another --workdir") from e
  finally:
    try:
      os.unlink(probe)
    except OSError:
      pass


def check_writable(path: str) -> None:
  """Creates the workdir `path` if needed and proves it writable with a probe file
  (removed again).

  A probe rather than os.access: root ignores permission bits, and a read-only
  mount or a full disk only shows when a file is actually written.
  """
  path = os.path.abspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise PreflightError(f"the workdir {path} is a file, not a folder: give a folder as --workdir")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise PreflightError(f"cannot create the workdir {path}: {e.strerror or e}") from e
  if not os.path.isdir(path):
    raise PreflightError(f"the workdir {path} is not a folder")
  _probe(path, "the workdir")


def check_can_create(path: str) -> None:
  """Proves, creating nothing, that the folder `path` can be written: a probe file in
  it, or in its nearest existing parent if it is not there yet."""
  folder = _existing_parent(path)
  if not os.path.isdir(folder):
    raise PreflightError(f"cannot create {os.path.abspath(path)}: {folder} is a file, not a folder")
  _probe(folder, "the folder")
