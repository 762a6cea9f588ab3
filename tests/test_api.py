"""The public sampling API (spect_fastgan_jax.Sampler) on a tiny run."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from configs import dataset_a
from conftest import ROOT, make_tiny, save_random_sampler_checkpoints, toy_dataset
from spect_fastgan_jax import Sampler, errors, sample
from spect_fastgan_jax import workdir as workdir_lib, write_nifti


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny run of dataset 'A' on a toy set without CER/bilateral (as in Table 1): its
  record and the sampler checkpoints of epochs 1 and 2, as training writes them. The
  weights are two random initialisations: the API reads nothing else, and no training
  compile is spent."""
  ds = toy_dataset(2)
  ds = ds.subset(~((ds.level == "CER") & (ds.pattern == "bilateral")))
  workdir = str(tmp_path_factory.mktemp("api") / "run")
  config = make_tiny(dataset_a.get_config())
  workdir_lib.write_run_config(workdir, config, ds)
  save_random_sampler_checkpoints(workdir, config)
  return workdir


@pytest.fixture(scope="module")
def sampler(run):
  return Sampler.load(run)


def test_images_are_those_mode_sample_writes_for_the_same_seed_and_index(run, sampler):
  out = sample.sample_run(workdir_lib.require_run_config(run), run, 2, num_per_condition=3, seed=7,
                          log=lambda m: None)
  with np.load(os.path.join(out, "samples.npz")) as z:
    images, level, pattern, index = z["images"], z["level"], z["pattern"], z["index"]
    assert int(z["seed"]) == 7
  assert {(str(l), str(p)) for l, p in zip(level, pattern)} == set(sampler.conditions)
  for l, p in sampler.conditions:
    sel = (level == l) & (pattern == p)
    np.testing.assert_array_equal(sampler.generate(l, p, seed=7, index=index[sel]), images[sel])
  # A non-contiguous, reordered choice of indices gives the same images too.
  sel = np.flatnonzero((level == "COR") & (pattern == "unilateral"))[[2, 0]]
  assert index[sel].tolist() != sorted(index[sel].tolist())
  np.testing.assert_array_equal(sampler.generate("COR", "unilateral", seed=7, index=index[sel]),
                                images[sel])
  # And another seed gives other images.
  assert not np.array_equal(sampler.generate("COR", "unilateral", seed=0, index=index[sel]),
                            images[sel])


def test_symmetric_flip_mirrors_about_half_of_the_normal_and_bilateral_images_only(run, sampler):
  flipping = Sampler.load(run, symmetric_flip=True)
  assert flipping.symmetric_flip and not sampler.symmetric_flip
  n = 48
  for pattern in ("normal", "bilateral", "unilateral"):
    plain, sym = sampler.generate("COR", pattern, n=n), flipping.generate("COR", pattern, n=n)
    same = np.all(np.isclose(sym, plain, atol=1e-6), axis=(1, 2))
    mirrored = np.all(np.isclose(sym, plain[:, :, ::-1], atol=1e-6), axis=(1, 2)) & ~same
    if pattern == "unilateral":   # a flip would move the defect to the other side
      assert same.all()
    else:                          # each image is the plain one or its mirror, on a fair coin
      assert (same | mirrored).all() and 12 <= mirrored.sum() <= n - 12
  # The same coins in --mode=sample, which records the setting.
  config = workdir_lib.require_run_config(run)
  config.sample.symmetric_flip = True
  out = sample.sample_run(config, run, 2, num_per_condition=4, seed=3, log=lambda m: None)
  with np.load(os.path.join(out, "samples.npz")) as z:
    sel = (z["level"] == "BG") & (z["pattern"] == "normal")
    np.testing.assert_array_equal(flipping.generate("BG", "normal", seed=3, index=z["index"][sel]),
                                  z["images"][sel])
  assert json.load(open(os.path.join(out, "info.json")))["symmetric_flip"] is True
  with pytest.raises(errors.ConfigError, match="symmetric_flip"):
    Sampler.load(run, symmetric_flip="yes")


def test_the_newest_epoch_is_the_default_and_any_saved_one_can_be_chosen(run, sampler):
  assert sampler.epoch == 2 and sampler.epochs == (1, 2)
  first = Sampler.load(run, epoch=1)
  assert first.epoch == 1
  assert not np.array_equal(first.generate("BG", "normal", n=2), sampler.generate("BG", "normal", n=2))


def test_output_is_float32_images_in_0_1_and_n_means_indices_0_to_n_minus_1(sampler):
  images = sampler.generate("BG", "unilateral", n=3)
  assert images.dtype == np.float32 and images.shape == (3, 64, 64)
  assert images.min() >= 0 and images.max() <= 1
  np.testing.assert_array_equal(sampler.generate("BG", "unilateral", index=[0, 1, 2]), images)
  np.testing.assert_array_equal(sampler.generate("BG", "unilateral", index=np.array([2, 0, 2])),
                                images[[2, 0, 2]])


def test_properties_describe_the_run(run, sampler):
  assert sampler.workdir == run
  assert sampler.levels == ("CER", "BG", "COR")
  assert len(sampler.conditions) == 8 and ("CER", "bilateral") not in sampler.conditions


def test_unknown_level_or_pattern_is_named_with_the_known_ones(sampler):
  with pytest.raises(errors.ConditionError, match=r"'XYZ'.*CER, BG, COR"):
    sampler.generate("XYZ", "normal", n=1)
  with pytest.raises(errors.ConditionError, match=r"'diffuse'.*normal, unilateral, bilateral"):
    sampler.generate("BG", "diffuse", n=1)


def test_a_condition_the_run_was_not_trained_on_is_refused(sampler):
  with pytest.raises(errors.ConditionError, match=r"CER/bilateral.*BG/bilateral") as e:
    sampler.generate("CER", "bilateral", n=1)
  assert isinstance(e.value, (errors.UserError, ValueError))


def test_missing_epoch_names_it_and_the_saved_ones(run):
  with pytest.raises(errors.CheckpointError, match=r"epoch 7.*1-2"):
    Sampler.load(run, epoch=7)


def test_a_workdir_without_a_run_is_a_user_error(tmp_path):
  with pytest.raises(errors.MissingRunError, match="config.json"):
    Sampler.load(str(tmp_path))
  # A run of several seeds holds one run per seed, in seed_<s>/ (as the trainer writes them).
  config = make_tiny(dataset_a.get_config())
  config.num_seeds = 2
  for c, w in workdir_lib.seed_runs(config, str(tmp_path)):
    workdir_lib.write_run_config(w, c)
  with pytest.raises(errors.MissingRunError, match=r"2 seeds.*seed_0.*seed_1"):
    Sampler.load(tmp_path)
  # A damaged run record is named, not a JSON traceback.
  (tmp_path / "seed_0" / "config.json").write_text('{"config": ')
  with pytest.raises(errors.RunError, match=r"seed_0.*config\.json"):
    Sampler.load(tmp_path / "seed_0")
  # A bad batch size is a config error naming the field.
  with pytest.raises(errors.ConfigError, match="sample.batch_size"):
    Sampler.load(tmp_path / "seed_1", batch_size=0)


@pytest.mark.parametrize("kwargs, says", [
    ({"n": 0}, "n must be an integer >= 1, got 0"),
    ({"n": 2, "index": [0, 1]}, "exactly one of n .* got both"),
    ({}, "exactly one of n .* got neither"),
    ({"index": [0.5, 1.0]}, "index must hold integers"),
    ({"index": [-1]}, "got -1"),
    ({"n": 1, "seed": -1}, "seed must be a whole number in 0..2\\*\\*32-1, got -1"),
    ({"n": 1, "seed": 2**32}, "seed must be"),
])
def test_bad_n_or_index_is_a_config_error(sampler, kwargs, says):
  with pytest.raises(errors.ConfigError, match=says):
    sampler.generate("BG", "normal", **kwargs)


@pytest.mark.parametrize("doc, after", [("docs/api.md", ""), ("README.md", "## Python API")])
def test_the_docs_example_runs(run, tmp_path, monkeypatch, doc, after):
  text = open(os.path.join(ROOT, doc)).read()
  code = re.search(r"```python\n(.*?)```", text[text.index(after):], re.S).group(1)
  code, found = re.subn(r"^workdir = .*$", f"workdir = {run!r}", code, flags=re.M)
  assert found == 1
  monkeypatch.chdir(tmp_path)  # the example writes its NIfTI file into the working folder
  exec(compile(code, doc, "exec"), {})
  nifti = [f for f in os.listdir(tmp_path) if f.endswith(".nii.gz")]
  assert nifti


def test_nifti_writer_is_public_and_importing_the_package_does_not_load_jax(tmp_path):
  import nibabel as nib
  images = np.random.default_rng(0).uniform(size=(2, 64, 64)).astype(np.float32)
  write_nifti(images, str(tmp_path / "x.nii.gz"))
  assert nib.load(tmp_path / "x.nii.gz").shape == (64, 64, 2)
  assert Sampler.write_nifti is write_nifti
  code = ("import sys, spect_fastgan_jax, spect_fastgan_jax.errors; "
          "assert 'jax' not in sys.modules; print(sorted(spect_fastgan_jax.__all__))")
  r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  assert r.stdout.split() == ["['Sampler',", "'write_nifti']"]


def test_images_match_mode_sample_at_the_cpu_schedule_widths(tmp_path):
  # Tiny widths round alike at every batch size, these do not, so only one shared
  # batch size makes the two agree bit for bit. Untrained weights show it as well.
  # A batch of 64 (not the default 256) keeps the compile short, and XLA:CPU rounds it
  # apart from a batch of 8 (measured: 46 pixels differ by 1 ulp); 8 images are drawn,
  # so a --mode=sample that compiled for its own image count would differ.
  config = dataset_a.get_config("cpu")
  config.sample.batch_size = 64
  workdir = str(tmp_path)
  # As training records it on the embedded default: unilateral slices flipped.
  workdir_lib.write_run_config(workdir, config, derived={"augment.flip_unilateral": True})
  config = workdir_lib.require_run_config(workdir)
  save_random_sampler_checkpoints(workdir, config, epochs=(1,))
  out = sample.sample_run(config, workdir, 1, num_per_condition=1, log=lambda m: None)
  with np.load(os.path.join(out, "samples.npz")) as z:
    images, level, pattern, index = z["images"], z["level"], z["pattern"], z["index"]
  sampler = Sampler.load(workdir)
  for k in (0, len(images) // 2, len(images) - 1):
    np.testing.assert_array_equal(sampler.generate(level[k], pattern[k], index=index[k:k + 1]),
                                  images[k:k + 1])
