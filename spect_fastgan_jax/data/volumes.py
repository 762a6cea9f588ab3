"""Reading users' SPECT volumes (NIfTI, DICOM) into the orientation of dataset.py.

Every reader returns a `Volume` in RAS+ voxel order (nibabel's canonical order:
axis 0 runs from the patient's left to right, axis 1 posterior to anterior,
axis 2 inferior to superior), so that a manifest's `slice` indexes the
craniocaudal axis from the feet up, whatever the file's own orientation.
`neighbour_slices` then turns three of those axial slices into the dataset
convention (row 0 anterior, column 0 the patient's right).

Errors are DataError with a message that names the file; the manifest reader
adds the row.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from scipy import ndimage

from spect_fastgan_jax.data.dataset import MATRIX, DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz")
# DICOM is LPS (+x patient's left, +y posterior); NIfTI/RAS negates the first two axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class Volume:
  """data: float32 [X, Y, Z] in RAS+ order; spacing: (x, y, z) voxel size in mm."""
  data: np.ndarray
  spacing: tuple[float, float, float]


def to_canonical(data: np.ndarray, affine: np.ndarray) -> Volume:
  """Reorders a 3-D array whose voxel->RAS mm map is `affine` into RAS+ order.

  Only flips and axis permutations (the closest canonical orientation), no
  interpolation: a slight obliquity stays in the data, as in a scanner's own axial
  reformat.
  """
  import nibabel as nib
  ornt = nib.orientations.io_orientation(affine)
  out = nib.orientations.apply_orientation(data, ornt)
  new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
  spacing = tuple(float(s) for s in np.sqrt((new_affine[:3, :3] ** 2).sum(axis=0)))
  return Volume(np.ascontiguousarray(out, dtype=np.float32), spacing)


def _as_3d(data: np.ndarray, path: str) -> np.ndarray:
  # Trailing singleton axes (a 4-D NIfTI with one frame) are still one volume.
  while data.ndim > 3 and data.shape[-1] == 1:
    data = data[..., 0]
  if data.ndim != 3:
    raise DataError(f"{path}: not a 3-D volume (array shape {list(data.shape)})")
  if min(data.shape) < 3:
    raise DataError(f"{path}: not a 3-D volume (array shape {list(data.shape)}: "
                    "a slice and its two neighbours need at least 3 slices)")
  return data


def read_nifti(path: str) -> Volume:
  import nibabel as nib
  try:
    img = nib.load(path)
    # dataobj applies scl_slope / scl_inter.
    data = np.asarray(img.dataobj, dtype=np.float32)
  except Exception as e:  # nibabel raises many types for a corrupt file
    raise DataError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from e
  data = _as_3d(data, path)
  return to_canonical(data, np.asarray(img.affine, float))


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
  import pydicom
  try:
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
  except Exception as e:
    raise DataError(f"{path}: cannot read as DICOM ({type(e).__name__}: {e})") from e
  return ds, pixels


def read_dicom_multiframe(path: str) -> Volume:
  """An NM/SPECT reconstructed volume in one multi-frame file (frames = slices)."""
  ds, pixels = _read_dicom_file(path)
  frames = int(ds.get("NumberOfFrames", 1) or 1)
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


def read_dicom_folder(path: str) -> Volume:
  """A volume stored as one DICOM file per slice (or a folder with one multi-frame file)."""
  names = sorted(n for n in os.listdir(path)
                 if not n.startswith(".") and n.upper() != "DICOMDIR"
                 and os.path.isfile(os.path.join(path, n)))
  if not names:
    raise DataError(f"{path}: empty folder, no DICOM files")
  if len(names) == 1:
    return read_dicom_multiframe(os.path.join(path, names[0]))
  slices = [_read_dicom_file(os.path.join(path, n)) for n in names]
  ref, _ = slices[0]
  shapes = {p.shape for _, p in slices}
  if len(shapes) != 1 or len(next(iter(shapes))) != 2:
    raise DataError(f"{path}: the files are not slices of one volume (pixel arrays {sorted(shapes)})")
  row, col, normal = _orientation(ref, path)
  positions = []
  for (ds, _), name in zip(slices, names):
    p = _position(ds)
    if p is None:
      raise DataError(f"{os.path.join(path, name)}: no ImagePositionPatient: cannot order the slices")
    positions.append(p)
  frames = np.stack([_rescale(ds, p) for ds, p in slices])
  return _stack_by_position(ref, frames, np.array(positions), row, col, normal,
                            _pixel_spacing(ref, path), path)


def read_volume(path: str) -> Volume:
  """Reads a NIfTI file, a DICOM multi-frame file or a folder of DICOM slices."""
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file or folder")
  if os.path.isdir(path):
    return read_dicom_folder(path)
  if path.lower().endswith(NIFTI_SUFFIXES):
    return read_nifti(path)
  return read_dicom_multiframe(path)


def neighbour_slices(volume: Volume, index: int, path: str) -> tuple[np.ndarray, tuple[float, float]]:
  """Axial slices index-1, index, index+1 in the dataset convention.

  Returns:
    float32 [3, rows, cols] (below, centre, above; row 0 anterior, column 0 the
    patient's right) and the (row, column) pixel size in mm.
  """
  n = volume.data.shape[2]
  if not 1 <= index <= n - 2:
    raise DataError(f"{path}: slice {index} lacks a neighbour below and above (the volume has {n} "
                    f"slices along the craniocaudal axis, 0 = inferior; valid: 1..{n - 2})")
  block = volume.data[:, :, index - 1:index + 2]
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
