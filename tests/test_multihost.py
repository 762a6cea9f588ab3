"""Multi-host training, proven on one machine: two launch.py processes form one JAX job
(coordinator on 127.0.0.1, gloo collectives between CPU processes, one device each) and
train one run, as docs/multihost.md describes for a cluster."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorstore as ts

from conftest import ROOT, toy_dataset
from spect_fastgan_jax import checkpoints, models, train
from spect_fastgan_jax import train_state
from spect_fastgan_jax import workdir as workdir_lib

TINY = ["--config.model.g_channels=(16,8,8,8,8)", "--config.model.d_channels=(8,8,8,8)",
        "--config.model.d_out_channels=8", "--config.model.dec_channels=(8,8,8)",
        "--config.model.z_dim=8", "--config.model.embed_dim=8", "--config.log.monitor_every_epochs=0",
        "--config.log.sample_every_epochs=1", "--config.log.tensorboard=True", "--config.log.progress=True"]
# Every run of this file must end well within this; a hung process is killed then.
DEADLINE_S = 900
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_PORT",
                "SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NODELIST",
                "OMPI_MCA_orte_hnp_uri")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k not in _CLUSTER_ENV}
  env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **extra)
  return env


class _Job:
  """launch.py processes started together; all are killed if the test fails."""

  def __init__(self, tmp, name):
    self.tmp, self.name, self.procs, self.logs = tmp, name, [], []

  def start(self, args, env):
    i = len(self.procs)
    log = open(self.tmp / f"{self.name}.{i}.stderr", "w+")
    self.logs.append(log)
    self.procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT,
                                       env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True))

  def wait(self, timeout):
    """Exit codes of all processes; kills them all past `timeout` seconds."""
    end = time.time() + timeout
    try:
      return [p.wait(timeout=max(end - time.time(), 0.1)) for p in self.procs]
    except subprocess.TimeoutExpired:
      self.kill()
      raise AssertionError(f"{self.name}: not finished within {timeout} s\n" + self.stderr_tail())

  def running(self) -> bool:
    return all(p.poll() is None for p in self.procs)

  def kill(self):
    for p in self.procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    for p in self.procs:
      p.wait(timeout=30)

  def stderr(self, i) -> str:
    self.logs[i].flush()
    return (self.tmp / f"{self.name}.{i}.stderr").read_text()

  def stderr_tail(self) -> str:
    return "\n".join(f"--- process {i}:\n{self.stderr(i)[-3000:]}" for i in range(len(self.procs)))

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.kill()
    for log in self.logs:
      log.close()


def _start_pair(job, port, args, timeout_s=120):
  """Process 0 from flags, process 1 from the environment variables."""
  address = f"127.0.0.1:{port}"
  job.start([*args, "--distributed", f"--coordinator_address={address}", "--num_processes=2",
             "--process_id=0", f"--distributed_timeout={timeout_s}"], _env())
  job.start([*args, "--distributed", f"--distributed_timeout={timeout_s}"],
            _env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1"))


def _max_rel_diff(a, b) -> float:
  """Largest difference of two pytrees, per array relative to that array's largest value."""
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb) > 0
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             / max(float(np.max(np.abs(np.asarray(y, np.float64)))), 1e-12) for x, y in zip(la, lb))


def _diff_per_epoch_of_training(a, b, before, after) -> float:
  """Largest difference of pytrees a and b, per array relative to how far one epoch of
  training moves that array (`before` to `after`), or to 1e-4 of the array's scale if
  training does not move it (sampler statistics refitted the same way each epoch)."""
  leaves = [jax.tree_util.tree_leaves(t) for t in (a, b, before, after)]
  assert len(set(map(len, leaves))) == 1 and leaves[0]
  f = lambda x: np.asarray(x, np.float64)
  return max(float(np.max(np.abs(f(x) - f(y))))
             / max(float(np.max(np.abs(f(q) - f(p)))), 1e-4 * float(np.max(np.abs(f(q)))), 1e-12)
             for x, y, p, q in zip(*leaves))


@pytest.mark.slow
def test_two_processes_train_the_run_of_one_and_resume_after_both_are_killed(tmp_path):
  t0 = time.time()
  npz = tmp_path / "toy.npz"
  toy_dataset(1).save(npz)  # 9 slices: two steps of batch 4 per epoch, each split 2 + 2
  workdir = tmp_path / "run"
  args = ["--config=configs/dataset_a.py", f"--workdir={workdir}", f"--config.data.npz={npz}", *TINY]
  metrics = workdir / "metrics.jsonl"

  # 1. Both processes train a long run; both are killed (SIGTERM, as scancel or a
  # pre-emption sends it) once epoch 2 is logged.
  with _Job(tmp_path, "first") as job:
    _start_pair(job, _free_port(), [*args, "--config.num_epochs=1000"])
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
      assert job.running(), "a process ended early\n" + job.stderr_tail()
      assert time.time() - t0 < DEADLINE_S, "no epoch 2 in time\n" + job.stderr_tail()
      time.sleep(0.2)
    for p in job.procs:
      p.send_signal(signal.SIGTERM)
    assert job.wait(30) == [-signal.SIGTERM] * 2, job.stderr_tail()
    first_err = [job.stderr(0), job.stderr(1)]
  restored = max(int(e) for e in os.listdir(workdir / "checkpoints" / "train") if e.isdigit())
  epochs = restored + 1  # one epoch resumed: see 3. below
  # The one-process reference resumes from the very state the two processes resume from
  # (a copy of the run as the kill left it), so both do the same steps from the same
  # weights; see 3. below.
  shutil.copytree(workdir, tmp_path / "single")

  # 2. Both start again and finish the run from the newest complete checkpoint.
  with _Job(tmp_path, "resume") as job:
    _start_pair(job, _free_port(), [*args, f"--config.num_epochs={epochs}"])
    codes = job.wait(DEADLINE_S - (time.time() - t0))
    assert codes == [0, 0], job.stderr_tail()
    err = [job.stderr(0), job.stderr(1)]
  assert f"resuming {workdir} from epoch {restored}" in err[0]
  assert "batch split over 2 devices" in first_err[0] and "epoch/s" in first_err[0]  # progress line
  # Only process 0 writes the run record, logs, grids and progress; each epoch is logged once.
  for text in (first_err[1], err[1]):
    assert "training on" not in text and "resuming" not in text and "epoch/s" not in text, text[-2000:]
  assert [json.loads(l)["epoch"] for l in metrics.read_text().splitlines()] == list(range(1, epochs + 1))
  assert len(os.listdir(workdir / "tensorboard")) == 2  # one event file per launch: process 0's
  assert sorted(os.listdir(workdir / "samples_during_training")) == [
      f"epoch_{e:04d}.png" for e in range(1, epochs + 1)]
  assert json.load(open(workdir / "config.json"))["config"]["num_epochs"] == epochs

  # Checkpoints: every epoch's sampler checkpoint and the last 3 training states, and
  # no temporary folder (an unfinished save) left.
  ckpt = workdir / "checkpoints"
  assert sorted(int(e) for e in os.listdir(ckpt / "sampler")) == list(range(1, epochs + 1))
  assert sorted(os.listdir(ckpt / "train")) == [str(e) for e in range(max(epochs - 2, 1), epochs + 1)]

  # 3. One process (this one, one device) trains the same epochs from the same state
  # (epoch 1 from scratch, the resumed epochs from the copy taken after the kill) and
  # gives the same sampler weights. Each array's difference is measured against how far
  # one epoch of training moves it. The two do the same arithmetic except that each
  # step's gradient sums over the batch are added in another order (two halves, then the
  # all-reduce across processes), so they differ by float32 rounding; Adam's
  # normalisation amplifies that where a gradient is near zero (biases before a
  # BatchNorm, still ~lr x steps in size) and it grows fast: 0.05 of an epoch's
  # move after one resumed epoch, 0.115 after two (so one is resumed). A wrong batch
  # split, a lost or doubled gradient, or a process that trained on other batches
  # differs by about a whole epoch's move, so 0.15 is the line (and below, one epoch
  # is checked to move the weights far beyond rounding). Each comparison starts from
  # equal weights: carried over several epochs, a rounding difference grows (0.029 of
  # an array's scale after three on a slow CPU), so one long run against another
  # would fail by chance.
  TOLERANCE = 0.15
  config = workdir_lib.read_run_config(str(workdir))
  config.log.progress = False
  ds = toy_dataset(1)
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d)
  like = {"params": state.g_params, "batch_stats": state.g_stats}
  single = tmp_path / "single"
  for kind in ("train", "sampler"):  # what the killed run wrote after its newest state
    for e in os.listdir(single / "checkpoints" / kind):
      if not e.isdigit() or int(e) > restored:
        shutil.rmtree(single / "checkpoints" / kind / e)
  train.train(config, str(single), ds, log=lambda m: None)
  config.num_epochs = 1
  train.train(config, str(tmp_path / "fresh"), ds, log=lambda m: None)
  final = checkpoints.restore_sampler(str(single), epochs, like)
  before = checkpoints.restore_sampler(str(single), epochs - 1, like)
  first = _diff_per_epoch_of_training(checkpoints.restore_sampler(str(workdir), 1, like),
                                      checkpoints.restore_sampler(str(tmp_path / "fresh"), 1, like),
                                      before, final)
  diff = _diff_per_epoch_of_training(checkpoints.restore_sampler(str(workdir), epochs, like), final,
                                     before, final)
  # Written once: orbax has each process write a share of each replicated array (its
  # `ocdbt.process_<i>` database), so the array bytes the processes' databases hold add up
  # to one process's checkpoint, not two copies (2x). These are the stored values'
  # bytes as ocdbt reads them back, not the files' sizes: the files are zstd-compressed
  # and carry b-tree nodes whose number varies with how the writes interleave (the
  # files of two processes were seen at 1.0-1.61x those of one), while the values come
  # out at 1.02x (the shares' chunk headers).
  for kind in ("sampler", "train"):
    step = workdir / "checkpoints" / kind / str(epochs)
    shares = [_stored_bytes(p) for p in sorted(step.glob("*/ocdbt.process_*"))]
    one = sum(_stored_bytes(p) for p in (single / "checkpoints" / kind / str(epochs)).glob("*/ocdbt.process_*"))
    assert len(shares) == 2 and min(shares) > 0, (kind, shares)  # both processes wrote
    assert 0 < sum(shares) < 1.3 * one, (kind, shares, one)
  assert first < TOLERANCE, first
  assert diff < TOLERANCE, diff
  # The yardstick is real: one epoch moves the weights far beyond float32 rounding.
  one_epoch = _max_rel_diff(before, final)
  assert one_epoch > 1e-2, one_epoch
  print(f"two processes vs one, per epoch of training: epoch 1 {first:.2e}, resumed {diff:.2e} "
        f"(one epoch moves the weights {one_epoch:.2e} of their scale); checkpoint "
        f"values' bytes {shares} (one process: {one}); {time.time() - t0:.0f} s")


def _stored_bytes(database):
  """Bytes of the values an ocdbt database (one process's share of a checkpoint) holds."""
  kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{database}/"}).result()
  return sum(len(kv.read(key).result().value) for key in kv.list().result())


def _launch(args, env, timeout=60):
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _one_error_line(r) -> str:
  assert r.returncode == 1, r.stderr[-3000:]
  errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
  return errors[0]


def test_missing_or_inconsistent_cluster_settings_are_named(tmp_path):
  run = [f"--workdir={tmp_path / 'run'}"]
  line = _one_error_line(_launch([*run, "--distributed"], _env()))
  assert "--coordinator_address" in line and "JAX_NUM_PROCESSES" in line
  line = _one_error_line(_launch([*run, "--distributed", "--num_processes=2"], _env(JAX_PROCESS_ID="1")))
  assert "--coordinator_address (JAX_COORDINATOR_ADDRESS) not given" in line
  line = _one_error_line(_launch([*run, "--distributed", "--coordinator_address=127.0.0.1:1234",
                                  "--num_processes=2", "--process_id=2"], _env()))
  assert "--process_id must be in 0..1 for 2 processes" in line
  line = _one_error_line(_launch([*run, "--distributed", "--num_processes=2", "--process_id=0"],
                                 _env(JAX_COORDINATOR_ADDRESS="node001")))
  assert "JAX_COORDINATOR_ADDRESS must be HOST:PORT" in line and "'node001'" in line
  line = _one_error_line(_launch([*run, "--num_processes=2"], _env()))
  assert "--num_processes given without --distributed" in line
  line = _one_error_line(_launch([*run, "--distributed", "--mode=sample"], _env()))
  assert "--distributed is for --mode=train" in line
  assert not (tmp_path / "run").exists()


def test_a_peer_that_never_joins_times_out_with_an_error(tmp_path):
  t = time.time()
  r = _launch([f"--workdir={tmp_path / 'run'}", "--distributed", f"--coordinator_address=127.0.0.1:{_free_port()}",
               "--num_processes=2", "--process_id=0", "--distributed_timeout=3"], _env(), timeout=120)
  line = _one_error_line(r)
  assert "process 0 of 2: not all processes joined" in line and "--distributed_timeout=3 s" in line
  assert time.time() - t < 60
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_all_processes_is_refused_before_any_work(tmp_path):
  # The two processes find each other as a SLURM job's tasks do (JAX reads SLURM_*).
  npz = tmp_path / "toy.npz"
  toy_dataset(1).save(npz)
  args = ["--config=configs/dataset_a.py", f"--workdir={tmp_path / 'run'}", f"--config.data.npz={npz}",
          *TINY, "--config.batch_size=3", "--distributed", "--distributed_timeout=60"]
  port = str(_free_port())
  with _Job(tmp_path, "slurm") as job:
    for i in (0, 1):
      job.start(args, _env(SLURM_JOB_ID="17", SLURM_NTASKS="2", SLURM_PROCID=str(i), SLURM_LOCALID="0",
                           SLURM_STEP_NODELIST="127.0.0.1", JAX_COORDINATOR_PORT=port))
    assert job.wait(120) == [1, 1], job.stderr_tail()
    for i in (0, 1):
      errors = [l for l in job.stderr(i).splitlines() if l.startswith("error:")]
      assert errors == ["error: config field batch_size (3) must split evenly over all 2 devices of the "
                        "2 processes (1 in this one)"], job.stderr(i)[-2000:]
  assert not (tmp_path / "run").exists()
