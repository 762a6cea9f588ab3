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
file per slice, or one multi-frame file). Volumes past MAX_SLICE_PIXELS in-plane
or MAX_VOXELS in all are refused before their pixels are read.

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

from spect_fastgan_jax.data.dataset import MATRIX, DataError, missing_reason

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz")
# DICOM is LPS (+x patient's left, +y posterior); NIfTI/RAS negates the first two axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Far past any SPECT (64-256 pixels a side, a few hundred slices): a larger header is a
# wrong file, or one whose whole read (DICOM) would not fit in memory.
MAX_SLICE_PIXELS = 2048 * 2048
MAX_VOXELS = 1 << 30  # 4 GiB as float32
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


def _check_size(shape: tuple[int, ...], path: str) -> None:
  """DataError naming the shape of a volume past MAX_SLICE_PIXELS or MAX_VOXELS."""
  x, y, z = (int(n) for n in shape)
  if x * y > MAX_SLICE_PIXELS or x * y * z > MAX_VOXELS:
    raise DataError(f"{path}: volume of shape {[x, y, z]} is past the reader's limit "
                    f"({MAX_SLICE_PIXELS} pixels a slice, {MAX_VOXELS} voxels in all); "
                    "a SPECT volume is far smaller: is it the right file?")


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
  _check_size(_shape_3d(shape, path), path)
  return _lazy_canonical(img.dataobj, shape, affine, path)


def _first(ds, keyword: str, sequences=("DetectorInformationSequence",)):
  """A tag from the dataset itself, or from the first item of a sequence where NM
  keeps it (DetectorInformationSequence) or of the enhanced multi-frame groups."""
  if keyword in ds:
    return ds.data_element(keyword).value
  for seq in sequences:
    if seq in ds and len(ds.data_element(seq).value):
      item = ds.data_element(seq).value[0]
      if keyword in item:
        return item.data_element(keyword).value
  shared = ds.get("SharedFunctionalGroupsSequence")
  if shared:
    for group in ("PlaneOrientationSequence", "PixelMeasuresSequence", "PixelValueTransformationSequence"):
      if group in shared[0] and keyword in shared[0].data_element(group).value[0]:
        return shared[0].data_element(group).value[0].data_element(keyword).value
  return None


def _rescale(ds, pixels: np.ndarray) -> np.ndarray:
  slope = _first(ds, "RescaleSlope")
  intercept = _first(ds, "RescaleIntercept")
  out = pixels.astype(np.float32)
  if slope is not None:
    out = out * np.float32(float(slope))
  if intercept is not None:
    out = out + np.float32(float(intercept))
  return out


def _orientation(ds, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Row and column direction cosines (LPS) and the slice normal."""
  iop = _first(ds, "ImageOrientationPatient")
  if iop is None or len(iop) != 6:
    raise DataError(f"{path}: no ImageOrientationPatient (neither in the dataset nor in its "
                    "DetectorInformationSequence): cannot tell left from right")
  row = np.array([float(v) for v in iop[:3]])
  col = np.array([float(v) for v in iop[3:]])
  return row, col, np.cross(row, col)


def _pixel_spacing(ds, path: str) -> tuple[float, float]:
  ps = _first(ds, "PixelSpacing")
  if ps is None or len(ps) != 2:
    raise DataError(f"{path}: no PixelSpacing")
  return float(ps[0]), float(ps[1])


def _position(ds):
  ipp = _first(ds, "ImagePositionPatient")
  return None if ipp is None else np.array([float(v) for v in ipp])


def _dicom_affine(row, col, normal, spacing_rc, origin, step) -> np.ndarray:
  """Voxel (column i, row j, frame k) -> RAS mm."""
  affine = np.eye(4)
  affine[:3, 0] = row * spacing_rc[1]
  affine[:3, 1] = col * spacing_rc[0]
  affine[:3, 2] = normal * step
  affine[:3, 3] = origin
  return _LPS_TO_RAS @ affine


def _read_dicom_file(path: str):
  """The dataset of a DICOM file, its pixel data not yet decoded."""
  import pydicom
  try:
    return pydicom.dcmread(path)
  except MemoryError:
    raise
  except Exception as e:
    raise DataError(f"{path}: cannot read as DICOM ({type(e).__name__}: {e})") from e


def _pixels(ds, path: str) -> np.ndarray:
  """The decoded pixel array of a dataset of `_read_dicom_file`."""
  try:
    return ds.pixel_array
  except MemoryError:
    raise
  except Exception as e:
    raise DataError(f"{path}: cannot read as DICOM ({type(e).__name__}: {e})") from e


def _series_name(ds, files: int) -> str:
  """How messages name a series: its UID, number, description and number of files."""
  uid = str(ds.get("SeriesInstanceUID", "") or "(no SeriesInstanceUID)")
  number, description = ds.get("SeriesNumber"), ds.get("SeriesDescription")
  return (f"{uid} (SeriesNumber {number if number is not None else 'none'}, "
          f"SeriesDescription {str(description or '')!r}, {files} file{'s' * (files != 1)})")


def _is_series(ds, series: str) -> bool:
  """Whether the manifest's `series` (a SeriesInstanceUID or SeriesNumber) names ds's series."""
  number = ds.get("SeriesNumber")
  return (series == str(ds.get("SeriesInstanceUID", "")) or
          (number not in (None, "") and series.strip() == str(number).strip()))


def pick_series(datasets: list, series: str, path: str) -> list:
  """The datasets of one series among `datasets` (pydicom datasets of one folder).

  A folder of several series (SeriesInstanceUID differs: a scan and its
  re-reconstruction, say) is never merged: without `series` it is a DataError
  naming each series; `series` picks one by SeriesInstanceUID or SeriesNumber.
  """
  groups: dict[str, list] = {}
  for ds in datasets:
    groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
  names = "; ".join(_series_name(g[0], len(g)) for g in groups.values())
  if series:
    chosen = [g for g in groups.values() if _is_series(g[0], series)]
    if len(chosen) != 1:
      raise DataError(f"{path}: {'no' if not chosen else 'more than one'} DICOM series "
                      f"matches the manifest's series {series!r}; here: {names}")
    return chosen[0]
  if len(groups) > 1:
    raise DataError(f"{path}: {len(groups)} DICOM series in one folder, not one volume: {names}; "
                    "pick one with the manifest's series column (its SeriesInstanceUID or "
                    "SeriesNumber) or give the series' own subfolder")
  return datasets


def read_dicom_multiframe(path: str, series: str = "") -> Volume:
  """An NM/SPECT reconstructed volume in one multi-frame file (frames = slices)."""
  ds = pick_series([_read_dicom_file(path)], series, path)[0]
  frames = int(ds.get("NumberOfFrames", 1) or 1)
  _check_size((int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), frames), path)
  pixels = _pixels(ds, path)
  if pixels.ndim != 3 or frames < 2:
    raise DataError(f"{path}: not a 3-D volume (a single {'x'.join(map(str, pixels.shape))} image; "
                    "give a multi-frame file or a folder of slices)")
  row, col, normal = _orientation(ds, path)
  spacing_rc = _pixel_spacing(ds, path)
  per_frame = ds.get("PerFrameFunctionalGroupsSequence")
  if per_frame and len(per_frame) == frames and "PlanePositionSequence" in per_frame[0]:
    positions = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                          for f in per_frame])
    return _stack_by_position(ds, _rescale(ds, pixels), positions, row, col, normal, spacing_rc, path)
  origin = _position(ds)
  if origin is None:
    raise DataError(f"{path}: no ImagePositionPatient (neither in the dataset nor in its "
                    "DetectorInformationSequence)")
  # NM frames advance along the normal by SpacingBetweenSlices (negative: against it).
  step = ds.get("SpacingBetweenSlices", None) or ds.get("SliceThickness", None)
  if step is None:
    raise DataError(f"{path}: neither SpacingBetweenSlices nor SliceThickness: unknown slice spacing")
  data = np.transpose(_rescale(ds, pixels), (2, 1, 0))  # [frame, row, col] -> [col, row, frame]
  return to_canonical(data, _dicom_affine(row, col, normal, spacing_rc, origin, float(step)))


def _stack_by_position(ds, frames, positions, row, col, normal, spacing_rc, path) -> Volume:
  """frames [K, rows, cols] at ImagePositionPatient positions [K, 3] -> Volume."""
  along = positions @ normal
  order = np.argsort(along)
  gaps = np.diff(along[order])
  if gaps.size == 0 or np.any(gaps <= 1e-3):
    raise DataError(f"{path}: slices share a position: not one 3-D volume")
  if np.ptp(gaps) > 0.05 * np.median(gaps):
    raise DataError(f"{path}: uneven slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm)")
  data = np.transpose(frames[order], (2, 1, 0))
  return to_canonical(data, _dicom_affine(row, col, normal, spacing_rc, positions[order[0]],
                                          float(np.median(gaps))))


def read_dicom_folder(path: str, series: str = "") -> Volume:
  """A volume stored as one DICOM file per slice (or a folder with one multi-frame
  file); `series` picks one series of a folder that holds several (pick_series)."""
  entries = sorted(n for n in os.listdir(path) if not n.startswith(".") and n.upper() != "DICOMDIR")
  names = [n for n in entries if os.path.isfile(os.path.join(path, n))]
  if not names:
    folders = [n for n in entries if os.path.isdir(os.path.join(path, n))]
    raise DataError(f"{path}: no DICOM files in the folder"
                    + (f", only the subfolder(s) {', '.join(folders[:5])}"
                       f"{', ...' if len(folders) > 5 else ''}: give one of them as the path"
                       if folders else ""))
  if len(names) == 1:
    return read_dicom_multiframe(os.path.join(path, names[0]), series)
  datasets = [_read_dicom_file(os.path.join(path, n)) for n in names]
  for ds, n in zip(datasets, names):
    ds.filename = os.path.join(path, n)  # names a file in errors whatever pydicom kept
  datasets = pick_series(datasets, series, path)
  if len(datasets) == 1:
    return read_dicom_multiframe(datasets[0].filename, series)
  ref = datasets[0]
  _check_size((int(ref.get("Columns", 0) or 0), int(ref.get("Rows", 0) or 0), len(datasets)), path)
  slices = [_pixels(ds, ds.filename) for ds in datasets]
  shapes = {p.shape for p in slices}
  if len(shapes) != 1 or len(next(iter(shapes))) != 2:
    raise DataError(f"{path}: the files are not slices of one volume (pixel arrays {sorted(shapes)})")
  row, col, normal = _orientation(ref, path)
  positions = []
  for ds in datasets:
    p = _position(ds)
    if p is None:
      raise DataError(f"{ds.filename}: no ImagePositionPatient: cannot order the slices")
    positions.append(p)
  frames = np.stack([_rescale(ds, p) for ds, p in zip(datasets, slices)])
  return _stack_by_position(ref, frames, np.array(positions), row, col, normal,
                            _pixel_spacing(ref, path), path)


def read_volume(path: str, series: str = "") -> Volume:
  """Reads a NIfTI file, a DICOM multi-frame file or a folder of DICOM slices (of
  the DICOM series `series` when the folder holds several: pick_series)."""
  if not os.path.exists(path):
    raise DataError(f"{path}: {missing_reason(path, 'no such file or folder')}")
  with _out_of_memory(path, "the volume"):
    if os.path.isdir(path):
      return read_dicom_folder(path, series)
    if path.lower().endswith(NIFTI_SUFFIXES):
      return read_nifti(path, series)
    return read_dicom_multiframe(path, series)


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
