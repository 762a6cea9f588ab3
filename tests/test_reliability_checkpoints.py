"""Reliability of a run's files: damaged checkpoints, half-finished saves, a full
disk and an unwritable workdir (docs/reliability.md; the kill -9 fault test is
benchmarks/fault_test.py)."""

import errno
import glob
import hashlib
import os
import re
import shutil

import jax
import numpy as np
import pytest

from configs import dataset_a
from conftest import make_tiny, toy_dataset
from spect_fastgan_jax import checkpoints, conditions, errors, models, modes, preflight, sample, train


def _quiet(msg):
  pass


def _config(epochs):
  config = make_tiny(dataset_a.get_config())
  config.num_epochs = epochs
  return config


def _same(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _largest_file(folder):
  files = [p for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)]
  return max(files, key=os.path.getsize)


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _digest(folder):
  """Every file under `folder` with its bytes' hash: a checkpoint folder's fingerprint."""
  out = {}
  for p in sorted(glob.glob(os.path.join(folder, "**"), recursive=True)):
    if os.path.isfile(p):
      with open(p, "rb") as f:
        out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
  """A finished 2-epoch tiny run and its final state; tests work on copies."""
  workdir = str(tmp_path_factory.mktemp("run2") / "run")
  final = train.train(_config(2), workdir, toy_dataset(), log=_quiet)
  return workdir, jax.device_get(final)


@pytest.fixture
def copy(run2, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(run2[0], workdir)
  return workdir


def _generator_like():
  config = _config(2)
  g, _ = models.from_config(config.model)
  return sample.generator_shapes(g, config)


def test_a_damaged_epoch_is_named_and_the_others_still_load(copy):
  like = _generator_like()
  intact = checkpoints.restore_sampler(copy, 2, like)
  _truncate(_largest_file(os.path.join(copy, "checkpoints", "sampler", "1")))
  with pytest.raises(checkpoints.CheckpointError, match=r"epoch 1 .*cannot be read.*epochs that exist: 2"):
    checkpoints.restore_sampler(copy, 1, like)
  assert checkpoints.sampler_epochs(copy) == [1, 2]
  assert _same(checkpoints.restore_sampler(copy, 2, like), intact)
  # A deleted file, as well as a truncated one.
  os.remove(_largest_file(os.path.join(copy, "checkpoints", "sampler", "2")))
  with pytest.raises(checkpoints.CheckpointError, match="epoch 2"):
    checkpoints.restore_sampler(copy, 2, like)


def test_sampling_a_damaged_epoch_is_one_clear_user_error(copy):
  _truncate(_largest_file(os.path.join(copy, "checkpoints", "sampler", "2")))
  with pytest.raises(errors.UserError) as err:
    modes.sample(_config(2), copy, epoch=2, num_per_condition=1, overwrite=False, log=_quiet)
  message = str(err.value)
  assert "epoch 2" in message and "\n" not in message and len(message) < 600
  assert not os.path.exists(os.path.join(copy, "samples"))


def test_training_resumes_from_the_newest_intact_state_and_heals_the_damaged_one(copy, run2):
  _, final = run2
  _truncate(_largest_file(os.path.join(copy, "checkpoints", "train", "2")))
  # What a kill -9 mid-write leaves: unfinished orbax folders. They must not block the saves.
  for kind in ("train", "sampler"):
    junk = os.path.join(copy, "checkpoints", kind, "2.orbax-checkpoint-tmp")
    os.makedirs(os.path.join(junk, "default"))
    open(os.path.join(junk, "default", "partial"), "wb").write(b"\0" * 100)
  said = []
  resumed = train.train(_config(2), copy, toy_dataset(), log=said.append)
  assert any("skipping a damaged checkpoint" in s and "epoch 2" in s for s in said)
  assert any("resuming" in s and "epoch 1" in s for s in said)
  assert _same(jax.device_get(resumed), final)  # bit-exact on the same platform
  assert not glob.glob(os.path.join(copy, "checkpoints", "*", "*orbax-checkpoint-tmp*"))
  ck = checkpoints.RunCheckpoints(copy, 3)
  try:
    assert _same(jax.device_get(ck.restore_train(2, final)), final)  # the damaged one was replaced
  finally:
    ck.close()


def test_a_sampler_checkpoint_lost_to_a_kill_is_written_on_resume(copy):
  like = _generator_like()
  before = checkpoints.restore_sampler(copy, 2, like)
  # A kill after the training state of epoch 2 landed but before its sampler checkpoint did.
  shutil.rmtree(os.path.join(copy, "checkpoints", "sampler", "2"))
  said = []
  train.train(_config(2), copy, toy_dataset(), log=said.append)
  assert any("missing sampler checkpoint of epoch 2" in s for s in said)
  assert _same(checkpoints.restore_sampler(copy, 2, like), before)


def test_a_full_disk_stops_the_run_before_it_writes(copy, monkeypatch):
  before = _digest(copy)
  monkeypatch.setattr(preflight, "free_bytes", lambda path: 1 << 20)
  with pytest.raises(preflight.PreflightError, match=r"not enough free disk space.*nothing was written"):
    train.train(_config(4), copy, toy_dataset(), log=_quiet)
  assert _digest(copy) == before


def test_a_disk_that_fills_during_the_run_stops_the_next_save_with_the_old_checkpoints_intact(
    copy, run2, monkeypatch):
  _, final = run2
  before = _digest(os.path.join(copy, "checkpoints"))
  monkeypatch.setattr(preflight, "free_bytes", lambda path: 1 << 20)
  ck = checkpoints.RunCheckpoints(copy, 3)
  try:
    with pytest.raises(checkpoints.CheckpointError, match="checkpoints of epoch 3"):
      ck.save(3, final, {"params": final.g_params, "batch_stats": final.g_stats})
  finally:
    ck.close()
  assert _digest(os.path.join(copy, "checkpoints")) == before


def test_an_unwritable_workdir_is_refused_with_one_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(preflight.PreflightError, match="cannot create the workdir"):
    preflight.check_writable(str(blocker / "run"))
  with pytest.raises(errors.UserError, match="workdir"):
    train.train(_config(1), str(blocker / "run"), toy_dataset(), log=_quiet)


def test_a_read_only_workdir_is_refused(tmp_path, monkeypatch):
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o555)
  if os.geteuid() == 0:
    # Root (as CI runs) writes through permission bits; its probe's write in that folder
    # then fails as it fails for any other user there.
    mkstemp = preflight.tempfile.mkstemp

    def denied(*args, dir=None, **kwargs):
      if dir is not None and os.path.abspath(dir) == str(ro):
        raise PermissionError(errno.EACCES, "Permission denied")
      return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(preflight.tempfile, "mkstemp", denied)
  try:
    with pytest.raises(preflight.PreflightError, match=re.escape(f"{ro} is not writable (Permission denied)")):
      preflight.check_writable(str(ro))
    assert os.listdir(ro) == []
    preflight.check_writable(str(tmp_path / "rw"))   # a writable folder passes, probe removed
    assert os.listdir(tmp_path / "rw") == []
  finally:
    ro.chmod(0o755)


def test_free_space_check_names_the_folder_and_the_sizes(tmp_path, monkeypatch):
  monkeypatch.setattr(preflight, "free_bytes", lambda path: 3 << 20)
  with pytest.raises(preflight.PreflightError, match=r"3\.0 MB free, about .* MB needed"):
    preflight.check_free_space(str(tmp_path / "not" / "yet"), 10 << 20, "a test")
  monkeypatch.undo()
  preflight.check_free_space(str(tmp_path / "not" / "yet"), 1 << 10, "a test")
  assert preflight.tree_bytes({"a": np.zeros((4, 4), np.float32), "b": jax.ShapeDtypeStruct((3,), np.int8)}) == 67


@pytest.mark.parametrize("first,last,every,keep,planned", [
    (1, 1000, 1, 3, (1000, 3)),   # the paper's schedule: a sampler checkpoint every epoch
    (1, 1000, 10, 3, (100, 3)),
    (1, 1005, 10, 3, (101, 3)),   # every 10th and the last
    (5, 12, 5, 3, (3, 3)),        # resumed at epoch 5: epochs 5, 10 and 12
    (996, 1000, 10, 3, (1, 3)),
    (1000, 1000, 1, 3, (1, 1)),   # one epoch left: one training state
    (1001, 1000, 1, 3, (0, 0)),   # a finished run writes nothing
])
def test_the_checkpoints_a_run_will_leave_are_counted(first, last, every, keep, planned):
  assert preflight.planned_checkpoints(first, last, every, keep) == planned


def test_a_run_whose_checkpoints_do_not_fit_is_refused_before_it_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(preflight, "free_bytes", lambda path: 1 << 30)
  workdir = tmp_path / "run"
  config = _config(10**6)
  with pytest.raises(preflight.PreflightError) as err:
    # should_stop: without the check the run would go on for a million epochs.
    train.train(config, str(workdir), toy_dataset(), log=_quiet, should_stop=lambda: True)
  message = str(err.value)
  # A sampler checkpoint's size is its arrays' (the generator's weights and statistics).
  sampler_bytes = preflight.tree_bytes(_generator_like())
  assert "\n" not in message and "1000000 sampler checkpoints" in message, message
  needed = float(re.search(r"1\.0 GB free, about ([0-9.]+) GB needed", message).group(1)) * 2**30
  assert 10**6 * sampler_bytes < needed < 1.01 * 10**6 * sampler_bytes, message
  assert "checkpoint.sampler_every_epochs" in message and str(workdir) in message
  assert not [f for _, _, files in os.walk(workdir) for f in files]
  # A sampler checkpoint every 1000th epoch fits in the same space.
  config.checkpoint.sampler_every_epochs = 1000
  preflight.check_checkpoint_space(str(workdir), 1, config.checkpoint, 10**6, sampler_bytes, 1 << 20)
