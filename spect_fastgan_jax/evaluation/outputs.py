"""Output folders that never silently replace earlier results, and strict JSON."""

from __future__ import annotations

import contextlib
import json
import math
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
  completes: a failure leaves the earlier outputs (or nothing) in place."""
  refuse_existing(out_dir, overwrite, hint)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
  try:
    yield tmp
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; reports are meant to be shared
    if os.path.exists(out_dir):
      shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
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
