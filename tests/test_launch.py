"""launch.py end to end, as a user runs it (subprocesses)."""

import json
import os
import re
import shlex
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from configs import dataset_a
from conftest import ROOT, toy_dataset
from spect_fastgan_jax import modes as modes_lib

TINY = ["--config.model.g_channels=(16,8,8,8,8)", "--config.model.d_channels=(8,8,8,8)",
        "--config.model.d_out_channels=8", "--config.model.dec_channels=(8,8,8)",
        "--config.model.z_dim=8", "--config.model.embed_dim=8", "--config.log.progress=False",
        "--config.log.sample_every_epochs=1", "--config.log.monitor_every_epochs=0"]
# (The diversity monitor, on by default, trains the condition classifier when a run
# starts; tests/test_fidelity_options.py runs it. Here it would only add minutes.)
TINY_EVAL = ["--config.evaluate.classifier.widths=(4,8,8)", "--config.evaluate.classifier.features=16",
             "--config.evaluate.classifier.steps=20"]


def _launch(*args, cwd=ROOT):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


def _readme_modes():
  """The README's Modes commands, in order, as launch.py arguments ($C substituted):
  (the config they name, [arguments of each command])."""
  text = open(os.path.join(ROOT, "README.md")).read()
  section = re.search(r"^## Modes$(.*?)^## ", text, re.M | re.S).group(1)
  block = re.search(r"^```bash$(.*?)^```$", section, re.M | re.S).group(1)
  commands = [shlex.split(l, comments=True) for l in block.splitlines()]
  config = next(c[0] for c in commands if c and c[0].startswith("C=")).partition("=")[2]
  return config, [[a.replace("$C", config) for a in c[2:]] for c in commands if c[:2] == ["python", "launch.py"]]


def _arg(args, flag, default=None):
  return next((a.partition("=")[2] for a in args if a.startswith(f"--{flag}=")), default)


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
  """The README's Modes commands, as written, run in order from a folder with the
  repository's configs, on a tiny schedule (2 epochs of tiny networks) and a tiny
  evaluation. The data source is a toy npz (so --mode=simulate writes that set, not a
  simulated one). Returns (folder, config, commands, [(mode, completed process)])."""
  tmp = tmp_path_factory.mktemp("launch")
  (tmp / "configs").symlink_to(os.path.join(ROOT, "configs"))
  npz = tmp / "toy.npz"
  toy_dataset().save(npz)
  tiny = [f"--config.data.npz={npz}", "--config.num_epochs=2", *TINY, *TINY_EVAL,
          "--config.evaluate.ms_ssim_pairs=20", "--config.evaluate.augmentation_repeats=2",
          "--config.evaluate.augmentation_steps=20"]
  config, commands = _readme_modes()
  done = []
  for args in commands:
    # The schedule is 2 epochs here: the sample command's epoch becomes the last one.
    args = ["--epoch=2" if a.startswith("--epoch=") else a for a in args]
    r = _launch(*args, *tiny, cwd=tmp)
    done.append((_arg(args, "mode", "train"), r))
    if r.returncode:
      break
  return tmp, config, commands, done


@pytest.fixture(scope="module")
def trained(readme):
  """The README sequence's run (the quickstart's runs/dataset_a_cpu, 2 epochs) and its
  toy data set."""
  tmp, _, _, done = readme
  train_run = dict(done).get("train")
  assert train_run is not None and train_run.returncode == 0, done[-1][1].stderr[-3000:]
  return tmp / "runs" / "dataset_a_cpu", tmp / "toy.npz"


def test_the_readme_modes_run_in_order_on_the_quickstarts_run(readme):
  """Every mode finds the run the command before it wrote: the quickstart's workdir."""
  tmp, config, commands, done = readme
  for mode, r in done:
    assert r.returncode == 0, (mode, r.stderr[-3000:])
  assert [mode for mode, _ in done] == ["simulate", "train", "select", "evaluate", "sample", "augment"]
  run = tmp / "runs" / "dataset_a_cpu"   # where the README says the quickstart's run lands
  assert modes_lib.default_workdir(config) == os.path.join("runs", "dataset_a_cpu")
  # The epoch the README samples exists in a run of the config's own schedule.
  epoch = int(_arg(next(c for c in commands if _arg(c, "mode") == "sample"), "epoch"))
  assert 1 <= epoch <= dataset_a.get_config(config.partition(":")[2]).num_epochs
  assert (run / "dataset.npz").exists() and (run / "contact_sheet.png").exists()
  assert sorted(os.listdir(run / "checkpoints" / "sampler")) == ["1", "2"]
  select = [d for d in os.listdir(run / "evaluation") if d.startswith("select_")]
  assert select == ["select_2-2_every10_seed0"]   # multiples of 10, and the last epoch
  assert (run / "evaluation" / "epoch_0002_seed0" / "card.md").exists()
  assert (run / "samples" / "epoch_0002_seed0" / "samples.npz").exists()
  out = tmp / _arg(commands[-1], "out")
  assert (out / "manifest.csv").exists() and (out / "card.md").exists()


def test_train_writes_checkpoints_logs_and_grids(trained):
  workdir, _ = trained
  assert sorted(os.listdir(workdir / "checkpoints" / "sampler")) == ["1", "2"]
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
  assert (workdir / "samples_during_training" / "epoch_0002.png").exists()
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))


def test_sample_writes_npz_nifti_and_grid(trained):
  workdir, _ = trained
  r = _launch("--mode=sample", "--epoch=1", f"--workdir={workdir}", "--num_per_condition=3")
  assert r.returncode == 0, r.stderr
  out = workdir / "samples" / "epoch_0001_seed0"
  with np.load(out / "samples.npz") as z:
    assert z["images"].shape == (27, 64, 64)
    assert z["images"].min() >= 0 and z["images"].max() <= 1
    assert z["condition"].shape == (27, 6)
    assert set(z["pattern"]) == {"normal", "unilateral", "bilateral"}
    first = z["images"][(z["level"] == "BG") & (z["pattern"] == "unilateral")]
  vol = nib.load(out / "BG_unilateral.nii.gz")
  assert vol.shape == (64, 64, 3)
  np.testing.assert_allclose(np.transpose(np.asarray(vol.dataobj), (2, 1, 0)), first, atol=1e-6)
  assert (out / "grid.png").exists()
  # The same epoch and seed again is refused unless --overwrite.
  again = _launch("--mode=sample", "--epoch=1", f"--workdir={workdir}", "--num_per_condition=3")
  assert again.returncode != 0 and "--overwrite" in again.stderr
  r = _launch("--mode=sample", "--epoch=1", f"--workdir={workdir}", "--num_per_condition=3", "--overwrite")
  assert r.returncode == 0, r.stderr
  with np.load(out / "samples.npz") as z:
    np.testing.assert_array_equal(z["images"][(z["level"] == "BG") & (z["pattern"] == "unilateral")], first)


def test_sample_can_drop_near_copies_and_keeps_each_image_of_its_index(trained):
  workdir, _ = trained
  args = ["--mode=sample", "--epoch=2", f"--workdir={workdir}", "--num_per_condition=3", "--overwrite"]
  assert _launch(*args).returncode == 0
  out = workdir / "samples" / "epoch_0002_seed0"
  with np.load(out / "samples.npz") as z:
    plain = z["images"]
  r = _launch(*args, "--reject_near_copies")
  assert r.returncode == 0, r.stderr
  assert "near-copy filter: dropped" in r.stderr
  f = json.load(open(out / "info.json"))["near_copy_filter"]
  assert f["quantile"] == 0.01 and len(f["thresholds"]) == 9 and "leave-one-subject-out" in f["rule"]
  assert f["drawn"] == 27 + len(f["dropped"])
  with np.load(out / "samples.npz") as z:
    index, images = z["index"], z["images"]
  assert len(set(index.tolist())) == 27
  kept = index < 27
  np.testing.assert_array_equal(images[kept], plain[index[kept]])
  assert sorted(index[~kept].tolist()) == list(range(27, 27 + int((~kept).sum())))


def test_near_copy_filter_without_the_training_data_fails_before_writing(trained):
  workdir, npz = trained
  moved = npz.with_suffix(".moved")
  os.rename(npz, moved)
  try:
    r = _launch("--mode=sample", "--epoch=1", f"--workdir={workdir}", "--config.sample.seed=7",
                "--reject_near_copies")
  finally:
    os.rename(moved, npz)
  assert r.returncode == 1
  errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and str(npz) in errors[0] and "training data" in errors[0]
  assert "Traceback" not in r.stderr
  assert not (workdir / "samples" / "epoch_0001_seed7").exists()



def test_augment_writes_a_set_whose_manifest_trains_a_new_run(trained, tmp_path):
  workdir, _ = trained
  out = tmp_path / "set"
  r = _launch("--mode=augment", f"--workdir={workdir}", "--epoch=2", "--per_condition=3", f"--out={out}",
              *TINY_EVAL)
  assert r.returncode == 0, r.stderr
  assert "near-copy filter: dropped" in r.stderr   # on by default
  import csv
  with open(out / "manifest.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  per = {}
  for row in rows:
    per.setdefault((row["level"], row["pattern"]), []).append(row["source"])
  assert len(per) == 9 and all(sorted(v) == ["real", "real", "synthetic"] for v in per.values())
  assert all((out / row["path"]).exists() for row in rows)
  for name in ("info.json", "card.md", "card.json"):
    assert (out / name).exists()
  assert json.load(open(out / "info.json"))["near_copy_filter"]["drawn"] >= 9
  r = _launch("--mode=augment", f"--workdir={workdir}", "--epoch=2", "--per_condition=3",
              f"--out={tmp_path / 'unfiltered'}", "--noreject_near_copies", *TINY_EVAL)
  assert r.returncode == 0, r.stderr
  assert json.load(open(tmp_path / "unfiltered" / "info.json"))["near_copy_filter"] is None
  run2 = tmp_path / "run2"
  r = _launch("--config=configs/dataset_a.py", f"--workdir={run2}", f"--config.data.manifest={out / 'manifest.csv'}",
              "--config.num_epochs=1", *TINY, "--config.log.sample_every_epochs=0")
  assert r.returncode == 0, r.stderr
  record = json.load(open(run2 / "config.json"))
  assert record["data_counts"] == {k: 3 for k in (f"{l}/{p}" for l, p in per)}


@pytest.mark.parametrize("args, says", [
    (["--mode=augment", "--epoch=9", "--balance"], "epoch 9 has no checkpoint"),
    (["--mode=augment", "--epoch=2", "--balance", "--side=left"], "--side is for --mode=sample"),
    (["--mode=sample", "--epoch=2", "--side=up"], "unknown side 'up'"),
    (["--mode=sample", "--epoch=2", "--side=left"], "not side-conditioned"),
    (["--mode=sample", "--epoch=2", "--balance"], "they are for --mode=augment"),
])
def test_bad_augment_or_side_input_is_one_line_and_writes_nothing(trained, tmp_path, args, says):
  workdir, _ = trained
  before = sorted(os.listdir(workdir))
  r = _launch(*args, f"--workdir={workdir}", *([f"--out={tmp_path / 'set'}"] if "augment" in args[0] else []))
  assert r.returncode == 1
  errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and says in errors[0], r.stderr
  assert "Traceback" not in r.stderr
  assert not (tmp_path / "set").exists() and sorted(os.listdir(workdir)) == before


def test_augment_never_writes_into_an_existing_folder(trained, tmp_path):
  workdir, _ = trained
  (tmp_path / "mine.txt").write_text("keep")
  r = _launch("--mode=augment", f"--workdir={workdir}", "--epoch=2", "--balance", f"--out={tmp_path}")
  assert r.returncode == 1 and "exists" in r.stderr and "Traceback" not in r.stderr
  assert os.listdir(tmp_path) == ["mine.txt"]


def test_missing_epoch_lists_the_epochs_that_exist(trained):
  workdir, _ = trained
  r = _launch("--mode=sample", "--epoch=826", f"--workdir={workdir}")
  assert r.returncode == 1
  assert "epoch 826" in r.stderr and "1-2" in r.stderr
  assert "Traceback" not in r.stderr


def test_rerunning_a_finished_run_exits_zero_and_says_so(trained):
  workdir, npz = trained
  r = _launch(f"--config={_readme_modes()[0]}", f"--workdir={workdir}", f"--config.data.npz={npz}",
              "--config.num_epochs=2", *TINY)
  assert r.returncode == 0, r.stderr
  assert "finished" in r.stderr


def test_bad_config_value_gets_a_clear_error(tmp_path):
  r = _launch(f"--workdir={tmp_path / 'run'}", "--config.batch_size=0")
  assert r.returncode == 1
  assert "batch_size" in r.stderr and "Traceback" not in r.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config", ["configs/dataset_a.py:bogus", "configs/dataset_b.py:CPU"])
def test_an_unknown_config_variant_is_one_line(tmp_path, config):
  r = _launch(f"--config={config}", f"--workdir={tmp_path / 'run'}")
  assert r.returncode == 1
  variant = config.partition(":")[2]
  assert r.stderr.startswith(f"error: --config={config}: unknown config variant {variant!r}: give a "
                             "schedule, a data family or one of each joined by '+'; schedules: ")
  assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ctrl_c_stops_after_a_complete_epoch_and_the_run_resumes(tmp_path):
  import signal
  import time
  npz = tmp_path / "toy.npz"
  toy_dataset().save(npz)
  workdir = tmp_path / "run"
  args = ["--config=configs/dataset_a.py", f"--workdir={workdir}", f"--config.data.npz={npz}",
          "--config.num_epochs=500", *TINY, "--config.log.sample_every_epochs=0"]
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
    time.sleep(0.5)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err[-2000:]
  assert "stopped after epoch" in err and "Traceback" not in err
  epochs = [json.loads(l)["epoch"] for l in metrics.read_text().splitlines()]
  saved = sorted(int(e) for e in os.listdir(workdir / "checkpoints" / "sampler"))
  assert saved == epochs and epochs[-1] < 500
  r = _launch(*args[:3], "--config.num_epochs=" + str(epochs[-1] + 1), *args[4:])
  assert r.returncode == 0, r.stderr
  assert f"resuming {workdir} from epoch {epochs[-1]}" in r.stderr

