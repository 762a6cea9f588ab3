"""Writing outputs: files replaced atomically, output folders (samples, reports) that
never silently replace earlier results, strict JSON, and the image files the product
writes (PNG grids, NIfTI stacks of slices)."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from typing import BinaryIO, Callable

import numpy as np

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


# ----------------------------------------------------------------------------
# Image files.
# ----------------------------------------------------------------------------
# Pixel size written into the NIfTI stacks: the simulated set's in-plane spacing
# (a 64 x 64 matrix of ~4 mm pixels covers the head, as the paper's scans do).
NIFTI_PIXEL_MM = 4.0


def tile(images: np.ndarray, columns: int) -> np.ndarray:
  """[N, h, w] -> one [rows * h, columns * w] image, row-major, blank-padded."""
  n, h, w = images.shape
  rows = -(-n // columns)
  grid = np.zeros((rows * h, columns * w), np.float32)
  for k in range(n):
    r, c = divmod(k, columns)
    grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[k]
  return grid


def save_png(image: np.ndarray, path: str, scale: int = 2) -> None:
  """Writes a [H, W] image in [0, 1] as an 8-bit PNG (nearest-neighbour upscaled), atomically."""
  from PIL import Image
  arr = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
  im = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
  atomic_write(path, lambda f: im.save(f, format="PNG"), suffix=".png")


def write_nifti(images: np.ndarray, path: str, pixel_mm: float = NIFTI_PIXEL_MM) -> None:
  """Writes [N, 64, 64] images (project orientation) as one NIfTI volume [64, 64, N].

  Voxel axis i runs along columns (towards the patient's left, so -x in RAS),
  axis j along rows (towards posterior, -y), axis k over the samples.
  """
  import nibabel as nib
  data = np.transpose(images, (2, 1, 0)).astype(np.float32)  # [col, row, n]
  affine = np.diag([-pixel_mm, -pixel_mm, pixel_mm, 1.0])
  affine[:3, 3] = [pixel_mm * 31.5, pixel_mm * 31.5, 0.0]
  nib.save(nib.Nifti1Image(data, affine), path)
