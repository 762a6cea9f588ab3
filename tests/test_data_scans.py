"""Users' scans: NIfTI and DICOM readers, the orientation convention, the CSV
manifest with its grain reader, and the errors every bad input gets."""

import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from configs import data as data_config
from spect_fastgan_jax.data import manifest, source, volumes
from spect_fastgan_jax.data.dataset import DataError, SliceDataset, load

# Test volumes sample a scene on a 4 mm grid whose voxel centres sit at
# -126, -122, ..., 126 mm in x and y, and at -16, -12, ..., 16 mm in z (RAS).
GRID_XY = -126.0 + 4.0 * np.arange(64)
GRID_Z = -16.0 + 4.0 * np.arange(9)
SLICE = 4  # z = 0 mm, the slice the manifests select


def scene(ras: np.ndarray) -> np.ndarray:
  """Counts at RAS points [..., 3]: a background block and three markers, one on the
  patient's left (x < 0), one anterior (y > 0), one on the left one slice above."""
  x, y, z = ras[..., 0], ras[..., 1], ras[..., 2]
  near = lambda a, b: np.abs(a - b) < 1.0
  out = np.where((np.abs(x) < 100) & (np.abs(y) < 100), 10.0, 0.0)
  out = np.where(near(x, -42) & near(y, -2) & near(z, 0), 100.0, out)   # patient's left
  out = np.where(near(x, 2) & near(y, 50) & near(z, 0), 60.0, out)      # anterior
  out = np.where(near(x, -42) & near(y, -2) & near(z, 4), 80.0, out)    # left, slice above
  return out + 1.0


# Where the convention puts the markers: column = (126 - x) / 4 (column 0 at the
# patient's right), row = (126 - y) / 4 (row 0 anterior).
LEFT_MARKER = (32, 42)
ANTERIOR_MARKER = (19, 31)


def check_convention(three: np.ndarray):
  """three: [3, 64, 64] below, centre, above of the selected slice."""
  centre = three[1]
  assert centre[LEFT_MARKER] == 101 and LEFT_MARKER[1] >= 32  # patient's left: column >= 32
  assert centre[ANTERIOR_MARKER] == 61 and ANTERIOR_MARKER[0] < 32  # anterior: top rows
  assert three[2][LEFT_MARKER] == 81 and three[0][LEFT_MARKER] == 11  # above, below
  assert np.sort(centre.ravel())[-3] == 11  # nothing else is bright


def write_nifti(path, affine, shape=(64, 64, 9), scene_fn=scene, extra_dims=()):
  """A volume whose voxel (i, j, k) holds scene_fn(affine @ (i, j, k))."""
  ijk = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), -1)
  ras = ijk @ affine[:3, :3].T + affine[:3, 3]
  data = scene_fn(ras).astype(np.float32).reshape(shape + extra_dims)
  nib.save(nib.Nifti1Image(data, affine), str(path))
  return str(path)


def ras_affine(order=(0, 1, 2), flips=(1, 1, 1)):
  """Affine of a 64 x 64 x 9 grid (axis order and signs as given) onto GRID_*."""
  lo = {0: GRID_XY[0], 1: GRID_XY[0], 2: GRID_Z[0]}
  hi = {0: GRID_XY[-1], 1: GRID_XY[-1], 2: GRID_Z[-1]}
  affine = np.zeros((4, 4))
  affine[3, 3] = 1
  for axis, (world, sign) in enumerate(zip(order, flips)):
    affine[world, axis] = 4.0 * sign
    affine[world, 3] = lo[world] if sign > 0 else hi[world]
  return affine


def nm_dataset(rows, cols, frames=None):
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.20"  # NM Image Storage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID = meta.MediaStorageSOPClassUID
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.Modality = "NM"
  ds.Rows, ds.Columns = rows, cols
  if frames:
    ds.NumberOfFrames = frames
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.BitsAllocated = ds.BitsStored = 16
  ds.HighBit = 15
  ds.PixelRepresentation = 0
  ds.PixelSpacing = [4.0, 4.0]
  return ds


def lps_points(ipp, iop, step, shape):
  """LPS mm of pixel (frame, row, col) for a frame stack."""
  row, col = np.array(iop[:3], float), np.array(iop[3:], float)
  normal = np.cross(row, col)
  k, r, c = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
  return (np.array(ipp, float) + c[..., None] * 4.0 * row + r[..., None] * 4.0 * col
          + k[..., None] * step * normal)


def dicom_pixels(ipp, iop, step, shape=(9, 64, 64)):
  lps = lps_points(ipp, iop, step, shape)
  counts = scene(lps * np.array([-1.0, -1.0, 1.0]))  # LPS -> RAS
  # Stored as integers * 2 with RescaleSlope 0.5, as scanners store real counts.
  return (counts * 2).astype(np.uint16)


def write_nm_multiframe(path, ipp, iop, step, geometry_in_detector=True):
  pixels = dicom_pixels(ipp, iop, step)
  ds = nm_dataset(64, 64, frames=pixels.shape[0])
  geometry = Dataset() if geometry_in_detector else ds
  geometry.ImagePositionPatient = list(ipp)
  geometry.ImageOrientationPatient = list(iop)
  if geometry_in_detector:  # where NM keeps them
    ds.DetectorInformationSequence = [geometry]
  ds.SpacingBetweenSlices = step  # signed: some NM writers give frames against the normal
  ds.RescaleSlope = 0.5
  ds.RescaleIntercept = 0.0
  ds.PixelData = pixels.tobytes()
  pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
  return str(path)


def write_dicom_folder(folder, ipp, iop, step, series=None, scale=1, prefix="img"):
  """One file per slice; `series`: (SeriesInstanceUID, SeriesNumber, SeriesDescription)."""
  os.makedirs(folder, exist_ok=True)
  pixels = dicom_pixels(ipp, iop, step) * np.uint16(scale)
  lps = lps_points(ipp, iop, step, pixels.shape)
  # File names in a scrambled order: the reader must sort by position, not name.
  for n, k in enumerate(np.random.default_rng(0).permutation(pixels.shape[0])):
    ds = nm_dataset(64, 64)
    ds.ImagePositionPatient = list(lps[k, 0, 0])
    ds.ImageOrientationPatient = list(iop)
    ds.RescaleSlope = 0.5
    if series:
      ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series
    ds.PixelData = pixels[k].tobytes()
    pydicom.dcmwrite(os.path.join(folder, f"{prefix}{n:03d}.dcm"), ds, enforce_file_format=True)
  return str(folder)


AXIAL = (1, 0, 0, 0, 1, 0)
SERIES_A = ("1.2.826.0.1.3680043.8.498.1", 3, "SPECT brain")
SERIES_B = ("1.2.826.0.1.3680043.8.498.2", 4, "SPECT brain re-recon")


def write_two_series(folder):
  """A scan and its re-reconstruction (ten times the counts) in one folder, their
  slice positions interleaved (-16, -12, ... and -14, -10, ... mm): merged by
  position they would look like one volume of 2 mm slices."""
  write_dicom_folder(folder, (-126, -126, -16), AXIAL, 4.0, SERIES_A, prefix="a")
  write_dicom_folder(folder, (-126, -126, -14), AXIAL, 4.0, SERIES_B, scale=10, prefix="b")
  return str(folder)


def read_three(path, index=SLICE):
  three, _ = volumes.neighbour_slices(volumes.read_volume(str(path)), index, str(path))
  return three


# --- Orientation convention ---------------------------------------------------

@pytest.mark.parametrize("order,flips", [
    ((0, 1, 2), (1, 1, 1)),     # RAS
    ((0, 1, 2), (-1, 1, 1)),    # LAS (radiological storage)
    ((0, 1, 2), (-1, -1, -1)),  # LPI
    ((2, 0, 1), (1, -1, 1)),    # axes permuted: stored as [z, x, y]
])
def test_nifti_marker_on_patient_left_lands_in_columns_32_up(tmp_path, order, flips):
  affine = ras_affine(order, flips)
  shape = tuple({0: 64, 1: 64, 2: 9}[w] for w in order)
  check_convention(read_three(write_nifti(tmp_path / "v.nii.gz", affine, shape)))


@pytest.mark.parametrize("ipp,iop,step,in_detector", [
    ((-126, -126, -16), (1, 0, 0, 0, 1, 0), 4.0, True),    # standard axial, frames upward
    ((126, -126, -16), (-1, 0, 0, 0, 1, 0), -4.0, True),   # columns to the right, negative spacing
    ((-126, 126, 16), (1, 0, 0, 0, -1, 0), 4.0, False),    # rows upward, normal inferior
])
def test_dicom_multiframe_marker_on_patient_left_lands_in_columns_32_up(tmp_path, ipp, iop, step,
                                                                         in_detector):
  path = write_nm_multiframe(tmp_path / "nm.dcm", ipp, iop, step, in_detector)
  check_convention(read_three(path))


def test_dicom_folder_of_slices_is_sorted_by_position(tmp_path):
  folder = write_dicom_folder(tmp_path / "series", (-126, -126, -16), (1, 0, 0, 0, 1, 0), 4.0)
  check_convention(read_three(folder))


def test_a_series_is_picked_by_the_series_column_or_by_its_subfolder(tmp_path):
  folder = write_two_series(tmp_path / "mixed")
  for pick in (SERIES_A[0], "3"):  # SeriesInstanceUID or SeriesNumber
    check_convention(volumes.neighbour_slices(volumes.read_volume(folder, pick), SLICE, folder)[0])
  b, _ = volumes.neighbour_slices(volumes.read_volume(folder, "4"), SLICE, folder)
  assert b.max() == 10 * 11  # the re-reconstruction alone (between the markers): ten times the block
  write_dicom_folder(tmp_path / "split" / "a", (-126, -126, -16), AXIAL, 4.0, SERIES_A)
  write_dicom_folder(tmp_path / "split" / "b", (-126, -126, -14), AXIAL, 4.0, SERIES_B, scale=10)
  check_convention(read_three(tmp_path / "split" / "a"))
  path = write_manifest(tmp_path, "path,slice,level,pattern,series\n"
                                  f"mixed,4,BG,normal,{SERIES_A[0]}\nmixed,4,COR,normal,4\n")
  ds = manifest.load_manifest(path, log=lambda s: None)
  check_convention(ds.slices[0])
  np.testing.assert_array_equal(ds.slices[1], b)


# Old and new storage of the same counts: float, and integers with scl_slope/scl_inter.
STORAGE = {"float32": (np.float32, None), "float64": (np.float64, None),
           "int16 scaled": (np.int16, (0.25, 3.0)), "uint8 scaled": (np.uint8, (0.5, 0.0))}


@pytest.mark.parametrize("chunk", [1, 1 << 16])  # voxels a read: a line of a slice, or a slice
@pytest.mark.parametrize("storage", sorted(STORAGE))
@pytest.mark.parametrize("order,flips", [((0, 1, 2), (1, 1, 1)), ((0, 1, 2), (-1, -1, -1)),
                                         ((2, 0, 1), (1, -1, 1)), ((1, 2, 0), (-1, 1, -1))])
def test_a_slab_read_lazily_equals_the_whole_volumes_slab_bit_for_bit(tmp_path, monkeypatch, order, flips,
                                                                      storage, chunk):
  monkeypatch.setattr(volumes, "READ_CHUNK_VOXELS", chunk)
  dtype, scaling = STORAGE[storage]
  affine = ras_affine(order, flips)
  shape = tuple({0: 64, 1: 64, 2: 9}[w] for w in order)
  counts = np.random.default_rng(0).uniform(0, 200, shape)
  img = nib.Nifti1Image(counts.astype(dtype), affine)
  if scaling:
    img.header.set_slope_inter(*scaling)
  path = str(tmp_path / "v.nii.gz")
  nib.save(img, path)
  lazy = volumes.read_volume(path)
  # What the reader did before it read slabs: the whole array as float32, reoriented.
  whole = volumes.to_canonical(np.asarray(nib.load(path).dataobj, dtype=np.float32), affine)
  assert lazy.shape == whole.shape and lazy.spacing == whole.spacing
  for k in range(1, lazy.shape[2] - 1):
    a, b = lazy.slab(k - 1, k + 2), whole.slab(k - 1, k + 2)
    assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)


def test_one_slice_of_a_large_volume_costs_its_slices_not_the_volume(tmp_path):
  import tracemalloc
  shape = (256, 256, 100)  # 25 MiB as float32; the three slices read are 768 KiB
  nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(tmp_path / "big.nii.gz"))
  tracemalloc.start()
  try:
    three, _ = volumes.neighbour_slices(volumes.read_volume(str(tmp_path / "big.nii.gz")), 50,
                                        "big.nii.gz")
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  slices = 3 * 256 * 256 * 4
  assert three.shape == (3, 256, 256) and peak < 2 * slices + (1 << 20), peak


def blob_on_left(ras):
  """A 10 mm blob on the patient's left, at the left marker's place."""
  d = np.linalg.norm(ras - np.array([-42.0, -2.0, 0.0]), axis=-1)
  return np.where(d < 5.0, 100.0, 0.0) + 1.0


def test_other_matrix_is_resampled_with_a_note_or_refused(tmp_path):
  affine = np.diag([2.0, 2.0, 4.0, 1.0])
  affine[:3, 3] = (-127, -127, -16)
  path = write_nifti(tmp_path / "fine.nii", affine, (128, 128, 9), scene_fn=blob_on_left)
  raw, pixel = volumes.neighbour_slices(volumes.read_volume(path), SLICE, path)
  out, message = volumes.to_matrix(raw, pixel, True, path)
  assert out.shape == (3, 64, 64) and "128 x 128" in message and "resampled" in message
  # The same field of view: the blob stays where the 4 mm grid has the left marker.
  row, col = np.unravel_index(np.argmax(out[1]), (64, 64))
  assert abs(row - LEFT_MARKER[0]) <= 1 and abs(col - LEFT_MARKER[1]) <= 1
  with pytest.raises(DataError, match="resample_inplane"):
    volumes.to_matrix(raw, pixel, False, path)


# --- Manifest ------------------------------------------------------------------

def another_patient(ras):
  """The scene with one more count in a corner: another scan than `scene`'s, for
  manifests that must not hold the same image twice."""
  corner = (ras[..., 0] > 120) & (ras[..., 1] > 120)
  return scene(ras) + np.where(corner, 1.0, 0.0)


@pytest.fixture
def scans(tmp_path):
  """A folder with a NIfTI and a DICOM volume of the scene, of two patients."""
  write_nifti(tmp_path / "a.nii.gz", ras_affine(), scene_fn=another_patient)
  write_nm_multiframe(tmp_path / "b.dcm", (-126, -126, -16), (1, 0, 0, 0, 1, 0), 4.0)
  return tmp_path


def write_manifest(folder, text, name="scans.csv"):
  path = folder / name
  path.write_text(text)
  return str(path)


def test_manifest_reads_nifti_and_dicom_like_the_simulator_writes(scans):
  path = write_manifest(scans, "path,slice,level,pattern,side,subject\n"
                               "a.nii.gz,4,BG,normal,,\n"
                               "b.dcm,4,cor,Unilateral,left,p7\n"
                               "# a comment line\n"
                               "a.nii.gz,5,COR,bilateral\n")
  ds = manifest.load_manifest(path, read_workers=2, log=lambda s: None)
  assert ds.slices.shape == (3, 3, 64, 64) and ds.slices.dtype == np.float32
  check_convention(ds.slices[0])
  check_convention(ds.slices[1])
  assert list(ds.level) == ["BG", "COR", "COR"]
  assert list(ds.pattern) == ["normal", "unilateral", "bilateral"]
  assert list(ds.side) == ["none", "left", "none"]
  assert list(ds.subject) == ["a.nii.gz", "p7", "a.nii.gz"]
  serial = manifest.load_manifest(path, read_workers=0, log=lambda s: None)
  np.testing.assert_array_equal(ds.slices, serial.slices)


def test_manifest_without_header(scans):
  path = write_manifest(scans, "a.nii.gz,4,BG,normal\nb.dcm,4,BG,unilateral,right\n")
  ds = manifest.load_manifest(path, log=lambda s: None)
  assert list(ds.side) == ["none", "right"]


def test_manifest_logs_inplane_resampling(tmp_path):
  affine = np.diag([2.0, 2.0, 4.0, 1.0])
  affine[:3, 3] = (-127, -127, -16)
  write_nifti(tmp_path / "fine.nii", affine, (128, 128, 9))
  path = write_manifest(tmp_path, "fine.nii,4,BG,normal\n")
  logs = []
  assert manifest.load_manifest(path, log=logs.append).slices.shape == (1, 3, 64, 64)
  assert any("fine.nii" in m and "resampled to 64 x 64" in m for m in logs)
  with pytest.raises(DataError, match=r"row 1 .*fine\.nii.*resample_inplane"):
    manifest.load_manifest(path, resample_inplane=False, log=lambda s: None)


def _bad_volume(kind):
  def fn(ras):
    out = scene(ras)
    hit = (np.abs(ras[..., 2]) < 1) & (np.abs(ras[..., 0]) < 3) & (np.abs(ras[..., 1]) < 3)
    return np.where(hit, {"nan": np.nan, "inf": np.inf, "negative": -5.0}[kind], out)
  return fn


BAD_ROWS = {
    "missing file": ("nope.nii.gz,4,BG,normal", "nope.nii.gz", "no such file"),
    "unreadable nifti": ("garbage.nii,4,BG,normal", "garbage.nii", "cannot read as NIfTI"),
    "unreadable dicom": ("garbage.dcm,4,BG,normal", "garbage.dcm", "cannot read as DICOM"),
    "2-D nifti": ("flat.nii,0,BG,normal", "flat.nii", "not a 3-D volume"),
    "4-D nifti": ("series.nii,4,BG,normal", "series.nii", "not a 3-D volume"),
    "2-D dicom": ("single.dcm,4,BG,normal", "single.dcm", "not a 3-D volume"),
    "first slice": ("a.nii.gz,0,BG,normal", "a.nii.gz", "lacks a neighbour"),
    "last slice": ("a.nii.gz,8,BG,normal", "a.nii.gz", "valid: 1..7"),
    "slice not a number": ("a.nii.gz,four,BG,normal", "a.nii.gz", "not an integer"),
    "nan": ("nan.nii,4,BG,normal", "nan.nii", "NaN or Inf"),
    "inf": ("inf.nii,4,BG,normal", "inf.nii", "NaN or Inf"),
    "negative": ("negative.nii,4,BG,normal", "negative.nii", "negative counts"),
    "unknown level": ("a.nii.gz,4,XYZ,normal", "a.nii.gz", "unknown level label 'XYZ'"),
    "unknown pattern": ("a.nii.gz,4,BG,stroke", "a.nii.gz", "unknown pattern label 'stroke'"),
    "unknown side": ("a.nii.gz,4,BG,unilateral,up", "a.nii.gz", "unknown side label 'up'"),
    "side of a normal": ("a.nii.gz,4,BG,normal,left", "a.nii.gz", "only unilateral"),
}


@pytest.fixture
def bad_scans(scans):
  (scans / "garbage.nii").write_bytes(b"not a nifti file at all" * 20)
  (scans / "garbage.dcm").write_bytes(b"not a dicom file" * 20)
  nib.save(nib.Nifti1Image(np.ones((64, 64), np.float32), np.eye(4)), str(scans / "flat.nii"))
  nib.save(nib.Nifti1Image(np.ones((64, 64, 9, 2), np.float32), np.eye(4)), str(scans / "series.nii"))
  single = nm_dataset(64, 64)
  single.PixelData = np.ones((64, 64), np.uint16).tobytes()
  pydicom.dcmwrite(str(scans / "single.dcm"), single, enforce_file_format=True)
  for kind in ("nan", "inf", "negative"):
    write_nifti(scans / f"{kind}.nii", ras_affine(), scene_fn=_bad_volume(kind))
  return scans


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_names_manifest_row_and_file(bad_scans, case):
  text, filename, reason = BAD_ROWS[case]
  # Two good rows first: the error must name row 3.
  path = write_manifest(bad_scans, f"path,slice,level,pattern,side\nb.dcm,4,BG,normal\n"
                                   f"a.nii.gz,5,COR,normal\n{text}\n")
  with pytest.raises(DataError) as e:
    manifest.load_manifest(path, log=lambda s: None)
  message = str(e.value)
  assert "scans.csv" in message and "row 3" in message and filename in message, message
  assert reason in message, message


def test_first_bad_row_is_reported_whatever_thread_reads_first(bad_scans):
  path = write_manifest(bad_scans, "b.dcm,4,BG,normal\nnan.nii,4,BG,normal\ngarbage.nii,4,BG,normal\n")
  for workers in (0, 4):
    with pytest.raises(DataError, match=r"row 2 .*nan\.nii"):
      manifest.load_manifest(path, read_workers=workers, log=lambda s: None)


@pytest.mark.parametrize("text", ["", "path,slice,level,pattern\n", "\n# only a comment\n"])
def test_empty_manifest(tmp_path, text):
  with pytest.raises(DataError, match="manifest is empty"):
    manifest.load_manifest(write_manifest(tmp_path, text), log=lambda s: None)


def test_bad_header_and_missing_manifest(tmp_path):
  with pytest.raises(DataError, match=r"bad header.*'slize'"):
    manifest.load_manifest(write_manifest(tmp_path, "path,slize,level,pattern\n"), log=print)
  with pytest.raises(DataError, match="no such manifest"):
    manifest.load_manifest(str(tmp_path / "absent.csv"), log=print)


def test_pattern_the_run_needs_but_manifest_lacks(scans):
  cfg = data_config.get_config()
  cfg.manifest = write_manifest(scans, "a.nii.gz,4,COR,normal\nb.dcm,4,COR,unilateral,left\n")
  cfg.levels = ("COR",)
  with pytest.raises(DataError, match=r"scans\.csv.*\['bilateral'\] have no slices"):
    source.load_training_set(cfg, log=lambda s: None)
  cfg.manifest = write_manifest(scans, "a.nii.gz,4,COR,normal\nb.dcm,4,COR,bilateral\n"
                                       "a.nii.gz,5,COR,unilateral,right\n")
  assert len(source.load_training_set(cfg, log=lambda s: None)) == 3


def test_npz_takes_precedence_and_round_trips(scans, tmp_path):
  cfg = data_config.get_config()
  cfg.levels = ("COR",)  # the manifest's only level (a missing level is refused)
  cfg.manifest = write_manifest(scans, "a.nii.gz,4,COR,normal\nb.dcm,4,COR,bilateral\n"
                                       "a.nii.gz,5,COR,unilateral,right\n")
  ds = source.build_full_set(cfg, log=lambda s: None)
  ds.save(tmp_path / "d.npz")
  cfg.npz = str(tmp_path / "d.npz")
  cfg.manifest = str(tmp_path / "absent.csv")
  again = source.load_training_set(cfg, log=lambda s: None)
  np.testing.assert_array_equal(again.slices, ds.slices)


def test_simulate_to_workdir_never_overwrites_on_failure(bad_scans, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  old = SliceDataset(slices=np.ones((1, 3, 64, 64), np.float32), level=["BG"], pattern=["normal"],
                     side=["none"], subject=["x"])
  old.save(workdir / "dataset.npz")
  before = (workdir / "dataset.npz").read_bytes()
  cfg = data_config.get_config()
  cfg.manifest = write_manifest(bad_scans, "a.nii.gz,4,COR,normal\nnope.nii,4,COR,normal\n")
  with pytest.raises(DataError, match="row 2"):
    source.simulate_to_workdir(cfg, str(workdir), log=lambda s: None)
  # A good manifest but a different data set: refused as well.
  cfg.manifest = write_manifest(bad_scans, "a.nii.gz,4,COR,normal\n")
  with pytest.raises(DataError, match="different data set"):
    source.simulate_to_workdir(cfg, str(workdir), log=lambda s: None)
  assert (workdir / "dataset.npz").read_bytes() == before
  assert sorted(os.listdir(workdir)) == ["dataset.npz"]


def test_simulate_to_workdir_writes_npz_and_contact_sheet(scans, tmp_path):
  cfg = data_config.get_config()
  cfg.manifest = write_manifest(scans, "a.nii.gz,4,COR,normal\nb.dcm,4,BG,bilateral\n"
                                       "a.nii.gz,5,CER,unilateral,right\n")
  npz, png = source.simulate_to_workdir(cfg, str(tmp_path / "run"), log=lambda s: None)
  assert len(load(npz)) == 3
  assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  # Same content again: kept, no error.
  assert source.simulate_to_workdir(cfg, str(tmp_path / "run"), log=lambda s: None) == (npz, png)
  assert sorted(os.listdir(tmp_path / "run")) == ["contact_sheet.png", "dataset.npz"]


# --- What would corrupt the training data, or read past memory: refused ---------

def _lying_header(path, shape):
  """A NIfTI whose header claims `shape` over a few bytes of data (never read)."""
  header = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)).header.copy()
  header.set_data_shape(shape)
  with open(path, "wb") as f:
    f.write(header.binaryblock + b"\0" * 8)


def _raise_memory_error(*args, **kwargs):
  raise MemoryError()  # as numpy raises it: no message


def _case_complex(folder, mp):
  counts = np.full((64, 64, 9), 10.0, np.float32)
  nib.save(nib.Nifti1Image((counts * (1 + 0.5j)).astype(np.complex64), ras_affine()), folder / "cplx.nii")
  return "cplx.nii,4,BG,normal\n"


def _case_link_loop(folder, mp):
  os.symlink("loop.nii", folder / "loop.nii")
  return "loop.nii,4,BG,normal\n"


def _case_broken_link(folder, mp):
  os.symlink("gone.nii", folder / "dangling.nii")
  return "dangling.nii,4,BG,normal\n"


def _case_memory(target):
  def case(folder, mp):
    mp.setattr(*target, _raise_memory_error)
    return "b.dcm,4,COR,normal\na.nii.gz,4,BG,normal\n"
  return case


def _case_copy(folder, mp):
  shutil.copy(folder / "a.nii.gz", folder / "copy_of_a.nii.gz")
  return "a.nii.gz,4,BG,normal,,p1\nb.dcm,4,BG,normal,,p2\ncopy_of_a.nii.gz,4,BG,unilateral,left,p3\n"


def _case_other_format(folder, mp):
  write_nifti(folder / "b_as_nifti.nii", ras_affine())  # the scan b.dcm holds, converted
  return "b.dcm,4,COR,normal,,p1\nb_as_nifti.nii,4,COR,normal,,p1\n"


# name: (writes files, returns the manifest text; what the one-line error must say)
INTEGRITY_CASES = {
    "two DICOM series in one folder": (
        lambda folder, mp: write_two_series(folder / "mixed") and "mixed,4,BG,normal\n",
        ["row 1 ", "mixed", "2 DICOM series", SERIES_A[0], SERIES_B[0], "'SPECT brain re-recon'",
         "series column"]),
    "a series the folder lacks": (
        lambda folder, mp: write_two_series(folder / "mixed") and
        "path,slice,level,pattern,series\nmixed,4,BG,normal,7\n",
        ["row 1 ", "no DICOM series matches the manifest's series '7'", "'SPECT brain'"]),
    "a folder of series subfolders": (
        lambda folder, mp: write_dicom_folder(folder / "study" / "s3", (-126, -126, -16), AXIAL, 4.0)
        and "study,4,BG,normal\n",
        ["row 1 ", "study", "only the subfolder(s) s3"]),
    "a series given for a NIfTI": (
        lambda folder, mp: "a.nii.gz,4,BG,normal,,,3\n", ["row 1 ", "a.nii.gz", "series column"]),
    "a duplicated column": (
        lambda folder, mp: "path,slice,level,pattern,level\na.nii.gz,4,BG,normal,CER\n",
        ["line 1", "column 'level' appears 2 times"]),
    "the same row twice": (
        lambda folder, mp: "a.nii.gz,4,BG,normal\nb.dcm,4,BG,normal\na.nii.gz,4,BG,normal\n",
        ["row 3 (line 3: a.nii.gz slice 4", "repeats row 1 (line 1: a.nii.gz slice 4", "same slice"]),
    "one slice with two labels": (
        lambda folder, mp: "path,slice,level,pattern,side,subject\na.nii.gz,4,BG,normal,,A\n"
                           "./a.nii.gz,4,BG,unilateral,left,B\n",
        ["row 2 (line 3", "repeats row 1 (line 2", "with other labels"]),
    "one scan under two subjects": (
        lambda folder, mp: "path,slice,level,pattern,side,subject\na.nii.gz,4,BG,normal,,A\n"
                           "./a.nii.gz,5,BG,normal,,B\n",
        ["row 2 (line 3: ./a.nii.gz slice 5", "row 1 (line 2: a.nii.gz slice 4", "same scan under two subjects"]),
    "a renamed copy under another subject": (
        _case_copy, ["row 3 (line 3: copy_of_a.nii.gz", "same image as row 1 (line 1: a.nii.gz",
                     "two subjects"]),
    "a scan given as DICOM and as NIfTI": (
        _case_other_format, ["row 2 (line 2: b_as_nifti.nii", "same image as row 1 (line 1: b.dcm"]),
    "a complex-valued NIfTI": (_case_complex, ["row 1 ", "cplx.nii", "complex-valued"]),
    "a volume past the size limit": (
        lambda folder, mp: _lying_header(folder / "huge.nii", (4096, 4096, 300)) or "huge.nii,4,BG,normal\n",
        ["row 1 ", "huge.nii", "shape [4096, 4096, 300]", "past the reader's limit"]),
    "out of memory reading a NIfTI": (
        _case_memory(("nibabel.load",)), ["row 2 ", "a.nii.gz", "out of memory while reading the volume"]),
    "out of memory reading its slices": (
        _case_memory(("nibabel.orientations.apply_orientation",)),
        ["row 1 ", "b.dcm", "out of memory while reading"]),
    "out of memory reading a DICOM file": (
        _case_memory(("pydicom.dcmread",)), ["row 1 ", "b.dcm", "out of memory while reading the volume"]),
    "a symbolic link loop": (_case_link_loop, ["row 1 ", "loop.nii", "symbolic link loop"]),
    "a broken symbolic link": (_case_broken_link, ["row 1 ", "dangling.nii", "broken symbolic link",
                                                   "'gone.nii'"]),
}


@pytest.mark.parametrize("case", sorted(INTEGRITY_CASES))
def test_a_manifest_that_would_corrupt_the_data_is_refused_naming_the_rows(scans, monkeypatch, case):
  write, expected = INTEGRITY_CASES[case]
  path = write_manifest(scans, write(scans, monkeypatch))
  with pytest.raises(DataError) as e:
    manifest.load_manifest(path, read_workers=2, log=lambda s: None)
  message = str(e.value)
  assert message.startswith(path) and "\n" not in message, message
  for part in expected:
    assert part in message, message


def _not_utf8(folder):
  (folder / "latin1.csv").write_bytes("path,slice,level,pattern\na.nii.gz,4,BG,normal\n"
                                      "b\u00e9.nii,4,BG,normal\n".encode("latin-1"))
  return folder / "latin1.csv"


def _manifest_loop(folder):
  os.symlink("scans.csv", folder / "scans.csv")
  return folder / "scans.csv"


# name: (returns the manifest's path; what the one-line error must say)
BAD_MANIFEST_FILES = {
    "a folder": (lambda folder: folder, ["is a folder, not a manifest file"]),
    "not UTF-8 on line 3": (_not_utf8, ["latin1.csv: line 3: not UTF-8 text (byte 0xe9 at column 2)"]),
    "a symbolic link loop": (_manifest_loop, ["scans.csv: a symbolic link loop"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFEST_FILES))
def test_a_manifest_that_cannot_be_read_says_why(tmp_path, case):
  make, expected = BAD_MANIFEST_FILES[case]
  path = str(make(tmp_path))
  with pytest.raises(DataError) as e:
    manifest.load_manifest(path, log=lambda s: None)
  message = str(e.value)
  assert message.startswith(path) and "\n" not in message, message
  for part in expected:
    assert part in message, message
