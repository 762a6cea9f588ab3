"""Bad input: every broken data set, manifest, volume or config value in the lists
below is refused with one DataError/ValueError that names the file, row or field,
never a traceback from deep inside a library. Each listed case runs (parametrized,
not sampled), and docs/reliability.md's table lists them. No JAX compiles here."""

import math
import os

import nibabel as nib
import numpy as np
import pytest

from configs import dataset_a
from conftest import make_tiny
from spect_fastgan_jax import errors, modes, train
from spect_fastgan_jax.data import dataset, manifest
from spect_fastgan_jax.data.dataset import DataError, SliceDataset
from spect_fastgan_jax import sharding


def _one_line(message: str) -> bool:
  return "\n" not in message and "Traceback" not in message


def _valid(n: int, rng) -> dict:
  levels, patterns = ("CER", "BG", "COR"), ("normal", "unilateral", "bilateral")
  return dict(slices=rng.uniform(1, 100, (n, 3, 64, 64)).astype(np.float32),
              level=np.array([levels[i % 3] for i in range(n)]),
              pattern=np.array([patterns[(i // 3) % 3] for i in range(n)]),
              side=np.array(["right" if patterns[(i // 3) % 3] == "unilateral" else "none" for i in range(n)]),
              subject=np.array([f"s{i}" for i in range(n)]))


def _ids(cases) -> list[str]:
  return [f"{a}-{b!r}" for a, b in cases]


# --- dataset.npz -------------------------------------------------------------

NPZ_ROWS = 10
# (fault, detail): the bad shape, the row, the bad label, the missing array, the size of garbage.
NPZ_CASES = [
    ("shape", [10, 3, 64]), ("shape", [10, 3, 64, 63]), ("shape", [10, 1, 64, 64]),
    ("shape", [0]), ("shape", [10, 3, 64, 64, 1]),
    ("object_dtype", None), ("string_dtype", None),
    ("nan", 0), ("inf", 4), ("-inf", 9), ("negative", 3), ("zero_slice", 8),
    ("level", ""), ("level", "cortex"), ("pattern", "NORMAL?"), ("side", "left-ish"), ("side", "42"),
    ("label_length", None), ("empty", None),
    ("missing_array", "slices"), ("missing_array", "level"), ("missing_array", "pattern"),
    ("missing_array", "side"), ("missing_array", "subject"),
    ("garbage", 0), ("garbage", 300),
]
_LABEL_ROW = 5  # the row a bad label is put in


@pytest.mark.parametrize("fault,detail", NPZ_CASES, ids=_ids(NPZ_CASES))
def test_a_broken_npz_is_refused_naming_the_file_and_row(tmp_path, fault, detail):
  rng = np.random.default_rng(0)
  arrays = _valid(NPZ_ROWS, rng)
  path = str(tmp_path / "broken.npz")
  row = None
  if fault == "shape":
    arrays["slices"] = np.ones(detail, np.float32)
  elif fault == "object_dtype":
    arrays["slices"] = np.array([None] * NPZ_ROWS, dtype=object)
  elif fault == "string_dtype":
    arrays["slices"] = np.full((NPZ_ROWS, 3, 64, 64), "x")
  elif fault in ("nan", "inf", "-inf", "negative"):
    row = detail
    arrays["slices"][row, 1, 20, 30] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "negative": -0.5}[fault]
  elif fault == "zero_slice":
    row = detail
    arrays["slices"][row, 2] = 0
  elif fault in ("level", "pattern", "side"):
    row = _LABEL_ROW
    arrays[fault] = arrays[fault].astype(object)
    arrays[fault][row] = detail
    arrays[fault] = arrays[fault].astype(str)
  elif fault == "label_length":
    arrays["pattern"] = arrays["pattern"][:-1]
  elif fault == "empty":
    arrays = {k: v[:0] for k, v in arrays.items()}
  elif fault == "missing_array":
    del arrays[detail]
  if fault == "garbage":
    with open(path, "wb") as f:
      f.write(rng.bytes(detail))
  else:
    np.savez(path, **arrays)
  with pytest.raises(DataError) as err:
    dataset.load(path)
  message = str(err.value)
  assert path in message and _one_line(message)
  if row is not None:
    assert f"row {row}" in message


def test_integer_counts_are_valid_counts(tmp_path):
  arrays = _valid(9, np.random.default_rng(0))
  arrays["slices"] = np.round(arrays["slices"]).astype(np.uint16)
  np.savez(tmp_path / "ints.npz", **arrays)
  assert dataset.load(tmp_path / "ints.npz").slices.dtype == np.float32


def test_a_data_set_without_a_level_the_run_conditions_on_is_refused():
  arrays = _valid(9, np.random.default_rng(0))
  ds = SliceDataset(**arrays).subset(arrays["level"] != "BG")  # CER and COR only
  with pytest.raises(DataError, match=r"no slices at level\(s\) \['BG'\].*data.levels"):
    dataset.select_levels(ds, ("CER", "BG", "COR"), "toy.npz")
  assert len(dataset.select_levels(ds, ("COR",), "toy.npz")) == 3


# --- manifests and volumes ---------------------------------------------------

N_SLICES = 7  # craniocaudal slices of the test volumes: valid selections are 1..5


def _volume(path, data):
  nib.save(nib.Nifti1Image(np.asarray(data), np.diag([4.0, 4.0, 4.0, 1.0])), path)


# (fault, detail): the bad value where the fault has one.
MANIFEST_CASES = [
    ("level", "cerebrum"), ("pattern", "partial"), ("side", "middle"), ("side_on_normal", "left"),
    ("slice_text", "four"), ("slice_text", "4.5"), ("slice_text", ""), ("slice_text", "nan"),
    ("slice_low", 0), ("slice_low", -1), ("slice_high", N_SLICES - 1), ("slice_high", N_SLICES + 3),
    ("int_overflow_slice", 2**70), ("missing_file", "absent.nii.gz"), ("too_many_fields", "extra,more"),
    ("too_few_fields", None), ("empty_path", None),
    ("nan_volume", -1), ("inf_volume", 0), ("negative_volume", 1), ("zero_slice", 1),
    ("flat_volume", None), ("garbage_volume", 0), ("garbage_volume", 500),
]
MANIFEST_ROWS, MANIFEST_BAD_ROW = 3, 1  # the bad row is the second of three (row 2)


@pytest.mark.parametrize("fault,detail", MANIFEST_CASES, ids=_ids(MANIFEST_CASES))
def test_a_broken_manifest_or_volume_is_refused_naming_the_row_and_file(tmp_path, fault, detail):
  rng = np.random.default_rng(0)
  folder = str(tmp_path)
  good = rng.uniform(1, 50, (64, 64, N_SLICES)).astype(np.float32)
  _volume(os.path.join(folder, "good.nii.gz"), good)
  # One scan is one subject's (a scan under two subjects is refused, manifest._check_repeats).
  lines = [["good.nii.gz", str(1 + i), "COR", "normal", "", "s0"] for i in range(MANIFEST_ROWS)]
  line = lines[MANIFEST_BAD_ROW]
  broken = good.copy()
  k = int(line[1])
  if fault == "level":
    line[2] = detail
  elif fault == "pattern":
    line[3] = detail
  elif fault == "side":
    line[3], line[4] = "unilateral", detail
  elif fault == "side_on_normal":
    line[4] = detail
  elif fault in ("slice_text", "slice_low", "slice_high", "int_overflow_slice"):
    line[1] = str(detail)
  elif fault == "missing_file":
    line[0] = detail
  elif fault == "too_many_fields":
    line.extend(detail.split(","))
  elif fault == "too_few_fields":
    del line[2:]
  elif fault == "empty_path":
    line[0] = ""
  elif fault in ("nan_volume", "inf_volume", "negative_volume", "zero_slice"):
    # detail: which of the three slices (below, centre, above) is broken.
    if fault == "zero_slice":
      broken[:, :, k + detail] = 0
    else:
      broken[10, 20, k + detail] = {"nan_volume": np.nan, "inf_volume": np.inf,
                                    "negative_volume": -5.0}[fault]
    _volume(os.path.join(folder, "broken.nii.gz"), broken)
    line[0] = "broken.nii.gz"
  elif fault == "flat_volume":
    _volume(os.path.join(folder, "flat.nii.gz"), good[:, :, :2])
    line[0], line[1] = "flat.nii.gz", "1"
  elif fault == "garbage_volume":
    with open(os.path.join(folder, "junk.nii.gz"), "wb") as f:
      f.write(rng.bytes(detail))
    line[0] = "junk.nii.gz"
  path = os.path.join(folder, "scans.csv")
  with open(path, "w") as f:
    f.write("\n".join(",".join(cells) for cells in lines) + "\n")
  with pytest.raises(DataError) as err:
    manifest.load_manifest(path, read_workers=2, log=lambda m: None)
  message = str(err.value)
  assert path in message and f"row {MANIFEST_BAD_ROW + 1} " in message and _one_line(message)
  if fault not in ("empty_path", "too_few_fields"):
    assert line[0] in message  # the file


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n", "path,slice,level,pattern\n"])
def test_an_empty_manifest_is_refused(tmp_path, text):
  (tmp_path / "scans.csv").write_text(text)
  with pytest.raises(DataError, match="scans.csv: the manifest is empty"):
    manifest.load_manifest(str(tmp_path / "scans.csv"), log=lambda m: None)


# --- config values -----------------------------------------------------------

# (field, value): no booleans (Python counts True as 1, and check_config takes it as one).
BAD_CONFIG_VALUES = [
    ("batch_size", 0), ("batch_size", -1), ("batch_size", 2.5), ("batch_size", "4"), ("batch_size", None),
    ("num_epochs", 0), ("num_epochs", -3), ("num_epochs", 1.5), ("num_epochs", "x"),
    ("model.z_dim", 0), ("model.z_dim", -1), ("model.z_dim", 8.0), ("model.z_dim", ""),
    ("model.embed_dim", 0), ("model.embed_dim", None),
    ("optim.lr_g", 0), ("optim.lr_g", -1e-4), ("optim.lr_g", math.nan), ("optim.lr_g", math.inf),
    ("optim.lr_g", "2e-4"), ("optim.lr_d", 0.0), ("optim.lr_d", -math.inf), ("optim.lr_d", None),
    ("optim.b1", 1), ("optim.b1", 1.5), ("optim.b1", -0.1), ("optim.b1", math.nan), ("optim.b1", "0.5"),
    ("optim.b2", 1.0), ("optim.b2", -1), ("optim.ema_decay", 1), ("optim.ema_decay", math.nan),
    ("augment.max_shift", -1), ("augment.max_shift", 32), ("augment.max_shift", 1.5),
    ("augment.max_shift", "2"),
    ("loss.recon_distance", ""), ("loss.recon_distance", "l3"), ("loss.recon_distance", "L1"),
    ("checkpoint.keep_train_states", 0), ("checkpoint.keep_train_states", -1),
    ("checkpoint.keep_train_states", 1.5), ("checkpoint.sampler_every_epochs", 0),
    ("checkpoint.sampler_every_epochs", None), ("checkpoint.sampler_every_epochs", 2.0),
    ("num_seeds", 0), ("num_seeds", "1"), ("num_devices", 0), ("num_devices", -2), ("num_devices", 1.5),
    ("data.levels", ()), ("data.levels", ("CER", "CER")), ("data.levels", ("XX",)),
    ("data.levels", ("cor",)),
    ("model.g_channels", (8, 8, 8, 8)), ("model.g_channels", (8, 8, 8, 8, 0)),
    ("model.g_channels", (8, 8, 8, 8, 8, 8)), ("model.g_channels", ()),
    ("model.d_channels", (8, 8, 8)), ("model.d_channels", (8, 8, 8, -1)),
]


@pytest.mark.parametrize("field,value", BAD_CONFIG_VALUES, ids=_ids(BAD_CONFIG_VALUES))
def test_an_absurd_config_value_is_refused_naming_the_field(field, value):
  config = dataset_a.get_config()
  node = config
  *parents, leaf = field.split(".")
  for p in parents:
    node = node[p]
  # Bypass the ConfigDict's type lock as a typo'd command line or config file would.
  with node.ignore_type():
    node[leaf] = value
  with pytest.raises(ValueError) as err:
    train.check_config(config)
  assert isinstance(err.value, errors.UserError)
  message = str(err.value)
  assert field.split(".")[-1] in message and _one_line(message)


def test_more_devices_than_visible_or_than_the_batch_is_refused():
  with pytest.raises(ValueError, match="num_devices is 64 but only"):
    sharding.make_mesh(64, 4)
  import jax
  if len(jax.devices()) >= 3:
    with pytest.raises(ValueError, match="must split evenly"):
      sharding.make_mesh(3, 4)


def test_a_batch_larger_than_the_data_set_is_refused_before_compiling(tmp_path):
  config = dataset_a.get_config()
  config.batch_size = 64
  arrays = _valid(9, np.random.default_rng(0))
  with pytest.raises(ValueError, match=r"batch_size \(64\) is larger than the data set \(9 slices\)"):
    train.train(config, str(tmp_path / "run"), SliceDataset(**arrays), log=lambda m: None)
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


# --- workdirs and run records --------------------------------------------------

def _quiet(message):
  pass


@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_simulate_into_a_workdir_that_is_a_file_is_one_line(tmp_path, where):
  _volume(str(tmp_path / "v.nii.gz"), np.random.default_rng(0).uniform(1, 50, (64, 64, N_SLICES)))
  (tmp_path / "scans.csv").write_text("v.nii.gz,3,COR,normal\n")
  blocker = tmp_path / "run"
  blocker.write_text("not a folder")
  config = dataset_a.get_config()
  config.data.manifest = str(tmp_path / "scans.csv")
  workdir = blocker if where == "a file" else blocker / "run"
  with pytest.raises(errors.UserError) as err:
    modes.simulate(config, str(workdir), log=_quiet)
  message = str(err.value)
  assert str(blocker) in message and _one_line(message)
  assert blocker.read_text() == "not a folder"


RUN_RECORDS = ["[]", "{}", '"a run"', "3", "null", '{"config": []}', '{"config": {}}',
               '{"config": {"seed": 0, "batch_size": 4}}']


@pytest.mark.parametrize("text", RUN_RECORDS)
def test_sampling_a_run_whose_config_json_has_the_wrong_shape_is_one_line(tmp_path, text):
  (tmp_path / "config.json").write_text(text)
  with pytest.raises(errors.UserError) as err:
    modes.sample(dataset_a.get_config(), str(tmp_path), epoch=1, num_per_condition=1, overwrite=False,
                 log=_quiet)
  message = str(err.value)
  assert f"{tmp_path / 'config.json'} is not a record this package wrote" in message
  assert _one_line(message) and os.listdir(tmp_path) == ["config.json"]


def test_a_read_only_workdir_is_refused_before_sampling(tmp_path, monkeypatch):
  import errno
  import types

  from spect_fastgan_jax import preflight, sample
  from spect_fastgan_jax import workdir as workdir_lib
  workdir_lib.write_run_config(str(tmp_path), make_tiny(dataset_a.get_config()))

  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")

  def generate(*args, **kwargs):
    raise AssertionError("images generated before the workdir was checked")

  # A read-only mount: root writes into folders without write permission, so the
  # probe's write fails as the mount would make it fail.
  monkeypatch.setattr(preflight, "tempfile", types.SimpleNamespace(mkstemp=read_only))
  monkeypatch.setattr(sample, "generate", generate)
  with pytest.raises(errors.UserError) as err:
    modes.sample(dataset_a.get_config(), str(tmp_path), epoch=1, num_per_condition=1, overwrite=False,
                 log=_quiet)
  message = str(err.value)
  assert f"{tmp_path} is not writable (Read-only file system)" in message and _one_line(message)
  assert os.listdir(tmp_path) == ["config.json"]
