"""Output folders (samples, reports) that never silently replace earlier results."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


def refuse_existing(out_dir: str, overwrite: bool, hint: str = "") -> None:
  """FileExistsError naming `out_dir` unless it is new or `overwrite` is set."""
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists; pass --overwrite to replace it{hint}")


@contextlib.contextmanager
def new_folder(out_dir: str, overwrite: bool, hint: str = ""):
  """Yields a temporary folder beside `out_dir` that replaces it only once the block
  completes. A failure leaves the earlier outputs (or nothing) in place; at no
  moment is there neither the old folder nor the new one."""
  refuse_existing(out_dir, overwrite, hint)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
  try:
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
