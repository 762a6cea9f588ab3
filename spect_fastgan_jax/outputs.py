"""Writing outputs: files replaced atomically, output folders (samples, reports) that
never silently replace earlier results, and strict JSON."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from typing import BinaryIO, Callable

from spect_fastgan_jax.errors import OutputError, OutputExistsError

# What a user fixes by freeing space or choosing another folder, not a bug.
_USER_OS_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def writing(path: str):
  """Turns a permission, read-only or full-disk OSError while writing `path` into an
  OutputError naming it; any other error passes unchanged."""
  try:
    yield
  except OSError as e:
    if isinstance(e, OutputError) or e.errno not in _USER_OS_ERRORS:
      raise
    raise OutputError(f"cannot write {os.path.abspath(path)}: {e.strerror or e}") from e


def refuse_existing(out_dir: str, overwrite: bool, hint: str = "") -> None:
  """OutputExistsError (a FileExistsError) naming `out_dir` unless it is new or `overwrite` is set."""
  if os.path.exists(out_dir) and not overwrite:
    raise OutputExistsError(f"{out_dir} exists; pass --overwrite to replace it{hint}")


@contextlib.contextmanager
def new_folder(out_dir: str, overwrite: bool, hint: str = ""):
  """Yields a temporary folder beside `out_dir` that replaces it only once the block
  completes. A failure leaves the earlier outputs (or nothing) in place; at no
  moment is there neither the old folder nor the new one."""
  refuse_existing(out_dir, overwrite, hint)
  parent = os.path.dirname(os.path.abspath(out_dir))
  with writing(out_dir):
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
  try:
    with writing(out_dir):
      yield tmp
      os.chmod(tmp, 0o755)  # mkdtemp makes it private; outputs are meant to be shared
      if os.path.exists(out_dir):
        old = tempfile.mkdtemp(prefix=".old-", dir=parent)
        os.replace(out_dir, os.path.join(old, "previous"))
        os.replace(tmp, out_dir)
        shutil.rmtree(old)
      else:
        os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], suffix: str = "") -> None:
  """Calls write(file) on a temporary file next to `path`, then renames it to `path`:
  readers see the old file or the complete new one, never a partial one. A file that
  cannot be written (permissions, full disk) raises OutputError naming `path`."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  with writing(path):
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
  try:
    with writing(path):
      with os.fdopen(fd, "wb") as f:
        write(f)
      # mkstemp makes the file private (0600); data sets and figures are meant to be shared.
      os.chmod(tmp, 0o644)
      os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def finite(x):
  """NaN and Inf -> None, recursively, so the JSON is strict."""
  if isinstance(x, dict):
    return {k: finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [finite(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def write_json(obj, path: str) -> None:
  with open(path, "w") as f:
    json.dump(finite(obj), f, indent=1, default=list)
