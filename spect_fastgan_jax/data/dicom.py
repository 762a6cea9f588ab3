"""Reading DICOM SPECT volumes: one multi-frame file or a folder of one file per slice.

Each reader returns the voxels [column, row, frame] and their voxel -> RAS mm affine;
volumes.read_volume brings them into RAS+ order. DICOM's patient coordinates are LPS,
so the affine negates their first two axes. DICOM volumes are read whole (pydicom
decodes a file at a time); the header's size is checked against the readers' limits
(dataset.check_volume_size) before any pixels are decoded. A folder of several series
is never merged (pick_series).

Errors are DataError with a message that names the file.
"""

from __future__ import annotations

import os

import numpy as np

from spect_fastgan_jax.data.dataset import DataError, check_volume_size

# DICOM is LPS (+x patient's left, +y posterior); NIfTI/RAS negates the first two axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


def read_multiframe(path: str, series: str = "") -> tuple[np.ndarray, np.ndarray]:
  """An NM/SPECT reconstructed volume in one multi-frame file (frames = slices), as
  (voxels [column, row, frame], voxel -> RAS mm affine)."""
  ds = pick_series([_read_dicom_file(path)], series, path)[0]
  frames = int(ds.get("NumberOfFrames", 1) or 1)
  check_volume_size((int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), frames), path)
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
    return _stack_by_position(_rescale(ds, pixels), positions, row, col, normal, spacing_rc, path)
  origin = _position(ds)
  if origin is None:
    raise DataError(f"{path}: no ImagePositionPatient (neither in the dataset nor in its "
                    "DetectorInformationSequence)")
  # NM frames advance along the normal by SpacingBetweenSlices (negative: against it).
  step = ds.get("SpacingBetweenSlices", None) or ds.get("SliceThickness", None)
  if step is None:
    raise DataError(f"{path}: neither SpacingBetweenSlices nor SliceThickness: unknown slice spacing")
  data = np.transpose(_rescale(ds, pixels), (2, 1, 0))  # [frame, row, col] -> [col, row, frame]
  return data, _dicom_affine(row, col, normal, spacing_rc, origin, float(step))


def _stack_by_position(frames, positions, row, col, normal, spacing_rc, path):
  """frames [K, rows, cols] at ImagePositionPatient positions [K, 3] -> (voxels, affine)."""
  along = positions @ normal
  order = np.argsort(along)
  gaps = np.diff(along[order])
  if gaps.size == 0 or np.any(gaps <= 1e-3):
    raise DataError(f"{path}: slices share a position: not one 3-D volume")
  if np.ptp(gaps) > 0.05 * np.median(gaps):
    raise DataError(f"{path}: uneven slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm)")
  data = np.transpose(frames[order], (2, 1, 0))
  return data, _dicom_affine(row, col, normal, spacing_rc, positions[order[0]],
                            float(np.median(gaps)))


def read_folder(path: str, series: str = "") -> tuple[np.ndarray, np.ndarray]:
  """A volume stored as one DICOM file per slice (or a folder with one multi-frame
  file), as read_multiframe returns it; `series` picks one series of a folder that
  holds several (pick_series)."""
  entries = sorted(n for n in os.listdir(path) if not n.startswith(".") and n.upper() != "DICOMDIR")
  names = [n for n in entries if os.path.isfile(os.path.join(path, n))]
  if not names:
    folders = [n for n in entries if os.path.isdir(os.path.join(path, n))]
    raise DataError(f"{path}: no DICOM files in the folder"
                    + (f", only the subfolder(s) {', '.join(folders[:5])}"
                       f"{', ...' if len(folders) > 5 else ''}: give one of them as the path"
                       if folders else ""))
  if len(names) == 1:
    return read_multiframe(os.path.join(path, names[0]), series)
  datasets = [_read_dicom_file(os.path.join(path, n)) for n in names]
  for ds, n in zip(datasets, names):
    ds.filename = os.path.join(path, n)  # names a file in errors whatever pydicom kept
  datasets = pick_series(datasets, series, path)
  if len(datasets) == 1:
    return read_multiframe(datasets[0].filename, series)
  ref = datasets[0]
  check_volume_size((int(ref.get("Columns", 0) or 0), int(ref.get("Rows", 0) or 0), len(datasets)), path)
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
  return _stack_by_position(frames, np.array(positions), row, col, normal,
                            _pixel_spacing(ref, path), path)
