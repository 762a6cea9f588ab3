"""Reading users' SPECT volumes (NIfTI, DICOM) into the orientation of dataset.py.

Every reader returns a `Volume` in RAS+ voxel order (nibabel's canonical order:
axis 0 runs from the patient's left to right, axis 1 posterior to anterior,
axis 2 inferior to superior), so that a manifest's `slice` indexes the
craniocaudal axis from the feet up, whatever the file's own orientation.
`neighbour_slices` then turns three of those axial slices into the dataset
convention (row 0 anterior, column 0 the patient's right).

Only the slices a manifest names are read from a NIfTI file: a `Volume` reads
axial slabs on demand through nibabel's array proxy, so a large volume costs the
memory of its slices, not of the whole array. DICOM volumes are read whole (one
file per slice, or one multi-frame file: dicom.py). Volumes past
dataset.MAX_SLICE_PIXELS in-plane or dataset.MAX_VOXELS in all are refused before
their pixels are read.

Errors are DataError with a message that names the file; the manifest reader
adds the row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable

import numpy as np
from scipy import ndimage

from spect_fastgan_jax.data import dicom
from spect_fastgan_jax.data.dataset import MATRIX, DataError, check_volume_size, missing_reason

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz")
# A NIfTI slice is read in pieces of about this many voxels (256 KiB of float32), so
# that nibabel's buffers for a piece cost a constant, whatever the matrix.
READ_CHUNK_VOXELS = 1 << 16


@dataclasses.dataclass(frozen=True)
class Volume:
  """A 3-D volume in RAS+ order, read slab by slab.

  shape: (X, Y, Z) voxels in RAS+ order; spacing: (x, y, z) voxel size in mm;
  slab(lo, hi): float32 [X, Y, hi - lo], the axial slices lo..hi-1 (only those are read;
  perhaps a view, not to be written to).
  """
  shape: tuple[int, int, int]
  spacing: tuple[float, float, float]
  slab: Callable[[int, int], np.ndarray]


@contextlib.contextmanager
def _out_of_memory(path: str, what: str):
  """A MemoryError while reading `what` of `path` as a DataError that says so."""
  try:
    yield
  except MemoryError as e:
    raise DataError(f"{path}: out of memory while reading {what}; free memory (fewer "
                    "data.read_workers, other programs) or crop the volume") from e


def _orientation_of(affine: np.ndarray, shape: tuple[int, int, int]):
  """nibabel's orientation to the closest RAS+ order, the RAS+ shape and the voxel size."""
  import nibabel as nib
  ornt = nib.orientations.io_orientation(affine)
  new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
  spacing = tuple(float(s) for s in np.sqrt((new_affine[:3, :3] ** 2).sum(axis=0)))
  ras_shape = [0, 0, 0]
  for axis, (to, _) in enumerate(ornt):
    ras_shape[int(to)] = int(shape[axis])
  return ornt, tuple(ras_shape), spacing


def to_canonical(data: np.ndarray, affine: np.ndarray) -> Volume:
  """Reorders a 3-D array whose voxel->RAS mm map is `affine` into RAS+ order.

  Only flips and axis permutations (the closest canonical orientation), no
  interpolation: a slight obliquity stays in the data, as in a scanner's own axial
  reformat.
  """
  import nibabel as nib
  ornt, shape, spacing = _orientation_of(affine, data.shape)
  out = np.ascontiguousarray(nib.orientations.apply_orientation(data, ornt), dtype=np.float32)
  return Volume(shape, spacing, lambda lo, hi: out[:, :, lo:hi])


def _lazy_canonical(dataobj, file_shape: tuple[int, ...], affine: np.ndarray, path: str) -> Volume:
  """`to_canonical` of an array proxy (nibabel's `img.dataobj`, `file_shape` its
  shape, trailing singleton axes included) whose slabs are read when asked for.

  RAS+ axial slice j is the file's slice j along the axis that becomes RAS+ axis 2,
  counted from its other end when that axis is flipped; each piece read gets the
  same flips and permutation as the whole array would and lands where they put it,
  so a slab equals the whole array's slab bit for bit. A slice is read in pieces of
  about READ_CHUNK_VOXELS along the slower of its two axes in the file, in file
  order (a gzip file only streams forwards), into the slab: a read costs the slab
  plus a constant.
  """
  import nibabel as nib
  ornt, shape, spacing = _orientation_of(affine, file_shape[:3])
  axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
  chunk_axis = max(i for i in range(3) if i != axis)  # slower in the file's Fortran order
  n, m = int(file_shape[axis]), int(file_shape[chunk_axis])
  line = int(np.prod([file_shape[i] for i in range(3) if i not in (axis, chunk_axis)]))
  step = max(1, READ_CHUNK_VOXELS // line)
  to, flip = int(ornt[chunk_axis, 0]), ornt[chunk_axis, 1] < 0

  def slab(lo: int, hi: int) -> np.ndarray:
    out = np.empty(shape[:2] + (hi - lo,), np.float32)
    index = [slice(None)] * 3 + [0] * (len(file_shape) - 3)
    for j in (range(hi - 1, lo - 1, -1) if ornt[axis, 1] < 0 else range(lo, hi)):
      index[axis] = slice(n - 1 - j, n - j) if ornt[axis, 1] < 0 else slice(j, j + 1)
      for c in range(0, m, step):
        index[chunk_axis] = slice(c, min(c + step, m))
        try:
          # dataobj[...] applies scl_slope / scl_inter, as np.asarray(dataobj) does.
          block = np.asarray(dataobj[tuple(index)])
        except MemoryError:
          raise
        except Exception as e:  # a truncated or corrupt data block
          raise DataError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from e
        where = [slice(None), slice(None), j - lo]
        where[to] = slice(m - min(c + step, m), m - c) if flip else index[chunk_axis]
        out[tuple(where)] = nib.orientations.apply_orientation(block, ornt)[:, :, 0]
    return out

  return Volume(shape, spacing, slab)


def _shape_3d(shape: tuple[int, ...], path: str) -> tuple[int, int, int]:
  """The 3-D shape of an array of `shape`, or DataError: trailing singleton axes (a
  4-D NIfTI with one frame) are still one volume."""
  while len(shape) > 3 and shape[-1] == 1:
    shape = shape[:-1]
  if len(shape) != 3:
    raise DataError(f"{path}: not a 3-D volume (array shape {list(shape)})")
  if min(shape) < 3:
    raise DataError(f"{path}: not a 3-D volume (array shape {list(shape)}: "
                    "a slice and its two neighbours need at least 3 slices)")
  return shape


def read_nifti(path: str, series: str = "") -> Volume:
  """A NIfTI (or Analyze, MGH) file as a Volume whose slices are read on demand."""
  import nibabel as nib
  if series:
    raise DataError(f"{path}: the manifest's series column ({series!r}) picks a DICOM series, "
                    "but this is a NIfTI file: leave it empty")
  try:
    # The file stays open while the Volume lives: the next slice of a gzip file is then
    # read on from the last, not from the start.
    img = nib.load(path, keep_file_open=True)
    dtype = img.get_data_dtype()
    shape = tuple(int(n) for n in img.shape)
    affine = np.asarray(img.affine, float)
  except MemoryError:
    raise
  except Exception as e:  # nibabel raises many types for a corrupt file
    raise DataError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from e
  if dtype.kind == "c":
    raise DataError(f"{path}: complex-valued NIfTI ({dtype}); counts are real numbers: save "
                    "the real counts as a real-valued volume")
  if dtype.kind not in "biuf":
    raise DataError(f"{path}: NIfTI of data type {dtype} (not numbers); counts are real numbers")
  check_volume_size(_shape_3d(shape, path), path)
  return _lazy_canonical(img.dataobj, shape, affine, path)


def read_volume(path: str, series: str = "") -> Volume:
  """Reads a NIfTI file, a DICOM multi-frame file or a folder of DICOM slices (of
  the DICOM series `series` when the folder holds several: dicom.pick_series)."""
  if not os.path.exists(path):
    raise DataError(f"{path}: {missing_reason(path, 'no such file or folder')}")
  with _out_of_memory(path, "the volume"):
    if os.path.isdir(path):
      return to_canonical(*dicom.read_folder(path, series))
    if path.lower().endswith(NIFTI_SUFFIXES):
      return read_nifti(path, series)
    return to_canonical(*dicom.read_multiframe(path, series))


def neighbour_slices(volume: Volume, index: int, path: str) -> tuple[np.ndarray, tuple[float, float]]:
  """Axial slices index-1, index, index+1 in the dataset convention (only they are read).

  Returns:
    float32 [3, rows, cols] (below, centre, above; row 0 anterior, column 0 the
    patient's right) and the (row, column) pixel size in mm.
  """
  n = volume.shape[2]
  if not 1 <= index <= n - 2:
    raise DataError(f"{path}: slice {index} lacks a neighbour below and above (the volume has {n} "
                    f"slices along the craniocaudal axis, 0 = inferior; valid: 1..{n - 2})")
  with _out_of_memory(path, f"slices {index - 1}..{index + 1} of a volume of shape {list(volume.shape)}"):
    block = volume.slab(index - 1, index + 2)
    # RAS+ axis 0 runs to the patient's right and axis 1 anterior; the convention wants
    # column 0 at the right and row 0 anterior, so both are reversed.
    out = np.ascontiguousarray(np.transpose(block[::-1, ::-1, :], (2, 1, 0)), dtype=np.float32)
  return out, (volume.spacing[1], volume.spacing[0])


def to_matrix(slices: np.ndarray, pixel_rc: tuple[float, float], resample: bool,
              path: str) -> tuple[np.ndarray, str | None]:
  """Brings [3, rows, cols] slices onto the 64 x 64 matrix.

  A non-square field of view is first padded with zeros to a square one (so the
  head keeps its aspect ratio), then linearly resampled. Values are counts per
  pixel as reconstructed, interpolated, not re-binned: each slice is normalised to
  its maximum before training anyway.

  Returns:
    float32 [3, 64, 64] and a log message (None when nothing was resampled).
  """
  rows, cols = slices.shape[1:]
  if (rows, cols) == (MATRIX, MATRIX):
    return slices, None
  if not resample:
    raise DataError(f"{path}: in-plane matrix {rows} x {cols} is not {MATRIX} x {MATRIX} and "
                    "config field data.resample_inplane is False")
  extent = max(rows * pixel_rc[0], cols * pixel_rc[1])
  pad_r = int(round(extent / pixel_rc[0])) - rows
  pad_c = int(round(extent / pixel_rc[1])) - cols
  padded = np.pad(slices, ((0, 0), (pad_r // 2, pad_r - pad_r // 2), (pad_c // 2, pad_c - pad_c // 2)))
  zoom = (1.0, MATRIX / padded.shape[1], MATRIX / padded.shape[2])
  out = ndimage.zoom(padded, zoom, order=1, mode="grid-constant", grid_mode=True)
  out = np.clip(out, 0.0, None).astype(np.float32)
  message = (f"{path}: in-plane matrix {rows} x {cols} ({pixel_rc[0]:.2f} x {pixel_rc[1]:.2f} mm "
             f"pixels) resampled to {MATRIX} x {MATRIX} ({extent / MATRIX:.2f} mm pixels)")
  return out, message
