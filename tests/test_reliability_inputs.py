"""Bad input, generated (hypothesis): every broken data set, manifest, volume or
config value is refused with one DataError/ValueError that names the file, row
or field, never a traceback from deep inside a library. No JAX compiles here."""

import itertools
import math
import os
import tempfile

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configs import dataset_a, data as data_config
from spect_fastgan_jax import errors, modes, train
from spect_fastgan_jax.data import dataset, manifest, source
from spect_fastgan_jax.data.dataset import DataError, SliceDataset
from spect_fastgan_jax import sharding

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
_fresh = itertools.count()


def _folder(root) -> str:
  """A new empty folder per hypothesis example (fixtures are made once per test)."""
  path = os.path.join(str(root), f"ex{next(_fresh)}")
  os.makedirs(path)
  return path


def _one_line(message: str) -> bool:
  return "\n" not in message and "Traceback" not in message


def _valid(n: int, rng) -> dict:
  levels, patterns = ("CER", "BG", "COR"), ("normal", "unilateral", "bilateral")
  return dict(slices=rng.uniform(1, 100, (n, 3, 64, 64)).astype(np.float32),
              level=np.array([levels[i % 3] for i in range(n)]),
              pattern=np.array([patterns[(i // 3) % 3] for i in range(n)]),
              side=np.array(["right" if patterns[(i // 3) % 3] == "unilateral" else "none" for i in range(n)]),
              subject=np.array([f"s{i}" for i in range(n)]))


# --- dataset.npz -------------------------------------------------------------

NPZ_FAULTS = ("shape", "object_dtype", "string_dtype", "nan", "inf", "negative", "zero_slice",
              "level", "pattern", "side", "label_length", "empty", "missing_array", "garbage")


@SETTINGS
@given(fault=st.sampled_from(NPZ_FAULTS), n=st.integers(9, 12), row=st.integers(0, 8),
       seed=st.integers(0, 2**16), bad_dims=st.lists(st.integers(0, 70), min_size=1, max_size=5))
def test_a_broken_npz_is_refused_naming_the_file_and_row(tmp_path_factory, fault, n, row, seed, bad_dims):
  rng = np.random.default_rng(seed)
  arrays = _valid(n, rng)
  path = os.path.join(_folder(tmp_path_factory.getbasetemp()), "broken.npz")
  row_named = fault in ("nan", "inf", "negative", "zero_slice", "level", "pattern", "side")
  if fault == "shape":
    if tuple(bad_dims[1:]) == (3, 64, 64):
      bad_dims = bad_dims + [1]
    arrays["slices"] = np.ones(bad_dims, np.float32)
  elif fault == "object_dtype":
    arrays["slices"] = np.array([None] * n, dtype=object)
  elif fault == "string_dtype":
    arrays["slices"] = np.full((n, 3, 64, 64), "x")
  elif fault in ("nan", "inf"):
    arrays["slices"][row, rng.integers(3), rng.integers(64), rng.integers(64)] = (
        np.nan if fault == "nan" else -np.inf * rng.choice([-1, 1]))
  elif fault == "negative":
    arrays["slices"][row, rng.integers(3), rng.integers(64), rng.integers(64)] = -rng.uniform(1e-3, 10)
  elif fault == "zero_slice":
    arrays["slices"][row, rng.integers(3)] = 0
  elif fault in ("level", "pattern", "side"):
    arrays[fault] = arrays[fault].astype(object)
    arrays[fault][row] = rng.choice(["", "cortex", "NORMAL?", "left-ish", "42"])
    arrays[fault] = arrays[fault].astype(str)
  elif fault == "label_length":
    arrays["pattern"] = arrays["pattern"][:-1]
  elif fault == "empty":
    arrays = {k: v[:0] for k, v in arrays.items()}
  elif fault == "missing_array":
    del arrays[rng.choice(sorted(arrays))]
  if fault == "garbage":
    with open(path, "wb") as f:
      f.write(rng.bytes(int(rng.integers(0, 300))))
  else:
    np.savez(path, **arrays)
  with pytest.raises(DataError) as err:
    dataset.load(path)
  message = str(err.value)
  assert path in message and _one_line(message)
  if row_named:
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


MANIFEST_FAULTS = ("level", "pattern", "side", "side_on_normal", "slice_text", "slice_low",
                   "slice_high", "missing_file", "too_many_fields", "too_few_fields", "empty_path",
                   "nan_volume", "inf_volume", "negative_volume", "zero_slice", "flat_volume",
                   "garbage_volume", "int_overflow_slice")


@SETTINGS
@given(fault=st.sampled_from(MANIFEST_FAULTS), rows=st.integers(1, 5), bad=st.integers(0, 4),
       seed=st.integers(0, 2**16))
def test_a_broken_manifest_or_volume_is_refused_naming_the_row_and_file(tmp_path_factory, fault, rows,
                                                                        bad, seed):
  rng = np.random.default_rng(seed)
  folder = _folder(tmp_path_factory.getbasetemp())
  bad = bad % rows
  good = rng.uniform(1, 50, (64, 64, N_SLICES)).astype(np.float32)
  _volume(os.path.join(folder, "good.nii.gz"), good)
  lines = []
  for i in range(rows):
    lines.append(["good.nii.gz", str(1 + i % (N_SLICES - 2)), "COR", "normal", "", f"s{i}"])
  line = lines[bad]
  broken = good.copy()
  k = int(line[1])
  if fault == "level":
    line[2] = "cerebrum"
  elif fault == "pattern":
    line[3] = "partial"
  elif fault == "side":
    line[3], line[4] = "unilateral", "middle"
  elif fault == "side_on_normal":
    line[4] = "left"
  elif fault == "slice_text":
    line[1] = rng.choice(["four", "4.5", "", "nan"])
  elif fault == "slice_low":
    line[1] = str(-int(rng.integers(0, 5)))
  elif fault == "slice_high":
    line[1] = str(N_SLICES - 1 + int(rng.integers(0, 5)))
  elif fault == "int_overflow_slice":
    line[1] = str(2**70)
  elif fault == "missing_file":
    line[0] = "absent.nii.gz"
  elif fault == "too_many_fields":
    line.append("extra")
  elif fault == "too_few_fields":
    del line[2:]
  elif fault == "empty_path":
    line[0] = ""
  elif fault in ("nan_volume", "inf_volume", "negative_volume", "zero_slice"):
    value = {"nan_volume": np.nan, "inf_volume": np.inf, "negative_volume": -5.0}.get(fault)
    if fault == "zero_slice":
      broken[:, :, k + int(rng.integers(-1, 2))] = 0
    else:
      broken[rng.integers(64), rng.integers(64), k + int(rng.integers(-1, 2))] = value
    _volume(os.path.join(folder, "broken.nii.gz"), broken)
    line[0] = "broken.nii.gz"
  elif fault == "flat_volume":
    _volume(os.path.join(folder, "flat.nii.gz"), good[:, :, :2])
    line[0], line[1] = "flat.nii.gz", "1"
  elif fault == "garbage_volume":
    with open(os.path.join(folder, "junk.nii.gz"), "wb") as f:
      f.write(rng.bytes(int(rng.integers(0, 500))))
    line[0] = "junk.nii.gz"
  path = os.path.join(folder, "scans.csv")
  with open(path, "w") as f:
    f.write("\n".join(",".join(cells) for cells in lines) + "\n")
  with pytest.raises(DataError) as err:
    manifest.load_manifest(path, read_workers=2, log=lambda m: None)
  message = str(err.value)
  assert path in message and f"row {bad + 1} " in message and _one_line(message)
  if fault not in ("empty_path", "too_few_fields"):
    assert line[0] in message  # the file


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n", "path,slice,level,pattern\n"])
def test_an_empty_manifest_is_refused(tmp_path, text):
  (tmp_path / "scans.csv").write_text(text)
  with pytest.raises(DataError, match="scans.csv: the manifest is empty"):
    manifest.load_manifest(str(tmp_path / "scans.csv"), log=lambda m: None)


# --- config values -----------------------------------------------------------

# No booleans: Python counts True as 1, and check_config takes it as one (harmless).
_NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=3), st.none())
BAD_VALUES = {
    "batch_size": _NUMBERS.filter(lambda v: not (type(v) is int and v >= 1)),
    "num_epochs": _NUMBERS.filter(lambda v: not (type(v) is int and v >= 1)),
    "model.z_dim": _NUMBERS.filter(lambda v: not (type(v) is int and v >= 1)),
    "model.embed_dim": _NUMBERS.filter(lambda v: not (type(v) is int and v >= 1)),
    "optim.lr_g": _NUMBERS.filter(lambda v: not (type(v) in (int, float) and math.isfinite(v) and v > 0)),
    "optim.lr_d": _NUMBERS.filter(lambda v: not (type(v) in (int, float) and math.isfinite(v) and v > 0)),
    "optim.b1": _NUMBERS.filter(lambda v: not (type(v) in (int, float) and 0 <= v < 1)),
    "optim.b2": _NUMBERS.filter(lambda v: not (type(v) in (int, float) and 0 <= v < 1)),
    "optim.ema_decay": _NUMBERS.filter(lambda v: not (type(v) in (int, float) and 0 <= v < 1)),
    "augment.max_shift": _NUMBERS.filter(lambda v: not (type(v) is int and 0 <= v < 32)),
    "loss.recon_distance": st.text(max_size=4).filter(lambda v: v not in ("l1", "l2")),
    "checkpoint.keep_train_states": _NUMBERS.filter(lambda v: not (type(v) is int and v >= 1)),
    "checkpoint.sampler_every_epochs": _NUMBERS.filter(lambda v: not (type(v) is int and v >= 1)),
    "num_seeds": _NUMBERS.filter(lambda v: not (type(v) is int and v >= 1)),
    "num_devices": _NUMBERS.filter(lambda v: not (type(v) is int and (v == -1 or v >= 1))),
    "data.levels": st.one_of(st.just(()), st.just(("CER", "CER")),
                             st.lists(st.sampled_from(["CER", "BG", "COR", "XX", "cor"]), max_size=4)
                             .filter(lambda v: not set(v) <= {"CER", "BG", "COR"} or len(set(v)) != len(v)
                                     or not v)),
    "model.g_channels": st.lists(st.integers(-4, 8), max_size=7).filter(
        lambda v: len(v) != 5 or min(v) < 1),
    "model.d_channels": st.lists(st.integers(-4, 8), max_size=6).filter(
        lambda v: len(v) != 4 or min(v) < 1),
}


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(BAD_VALUES)))
def test_an_absurd_config_value_is_refused_naming_the_field(data, field):
  value = data.draw(BAD_VALUES[field])
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
