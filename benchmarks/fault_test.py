"""Fault test: SIGKILL a tiny training run at random moments, rerun it, compare.

  python benchmarks/fault_test.py [--kills=24] [--epochs=8] [--seed=0] [--max_minutes=25]

Trains a tiny model (the widths of tests/test_launch.py) on the toy data set
with `launch.py` as a subprocess, exactly as a user runs it. One uninterrupted
run gives the reference. Then the same command is started again and again in a
second workdir and killed with SIGKILL (no clean-up handlers run), choosing the
moment three ways in turn:
  random    uniformly within the reference run's wall time (start-up, compile,
            restore, training, saving: wherever it falls);
  in-write  as soon as an orbax temporary checkpoint folder appears (a
            checkpoint half written), after 0-30 ms;
  in-epoch  after the run has logged an epoch, within the next epoch's time.
After every kill the workdir is checked before the next start: every epoch
that orbax lists (sampler and training) restores, no log line is half written,
and the newest restorable training state is at most one epoch behind the last
epoch logged before the kill (the epoch whose asynchronous save was in flight).
When a run completes, its final training state, every sampler checkpoint and the
logged losses must equal the reference bit for bit (same platform, same seed);
then a fresh workdir starts the next trial, until `--kills` kills are done.

Exits 1 on any mismatch. Prints one JSON summary line (the figures in
docs/reliability.md).
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

TINY = ["--config.model.g_channels=(16,8,8,8,8)", "--config.model.d_channels=(8,8,8,8)",
        "--config.model.d_out_channels=8", "--config.model.dec_channels=(8,8,8)",
        "--config.model.z_dim=8", "--config.model.embed_dim=8", "--config.log.progress=False",
        "--config.log.sample_every_epochs=0", "--config.log.tensorboard=False"]
TMP_MARK = "orbax-checkpoint-tmp"


def command(workdir, npz, epochs, seed):
  return [sys.executable, os.path.join(ROOT, "launch.py"), "--config=configs/dataset_a.py",
          f"--workdir={workdir}", f"--config.data.npz={npz}", f"--config.num_epochs={epochs}",
          f"--config.seed={seed}", *TINY]


def start(cmd, log_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  log = open(log_path, "ab")
  # Its own session, so the kill reaches the run and any helper it started.
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True), log


def tmp_dirs(workdir):
  return glob.glob(os.path.join(workdir, "checkpoints", "*", f"*{TMP_MARK}*"))


def logged_epochs(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    text = f.read()
  lines = text.split("\n")
  # A kill mid-append may leave a last line without its newline; resume drops it.
  return [json.loads(l)["epoch"] for l in lines[:-1] if l.strip()]


def listed(workdir, kind):
  d = os.path.join(workdir, "checkpoints", kind)
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def restore(workdir, kind, epoch):
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(os.path.join(workdir, "checkpoints", kind, str(epoch), "default"))


def leaves(tree):
  import jax
  import numpy as np
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def same(a, b):
  la, lb = leaves(a), leaves(b)
  return len(la) == len(lb) and all(x.dtype == y.dtype and x.shape == y.shape
                                    and x.tobytes() == y.tobytes() for x, y in zip(la, lb))


def check_after_kill(workdir):
  """Problems with the workdir a kill left (empty list: none) and its newest
  restorable training epoch."""
  problems = []
  for kind in ("sampler", "train"):
    for e in listed(workdir, kind):
      try:
        restore(workdir, kind, e)
      except Exception as ex:  # a listed checkpoint that does not restore is half written
        problems.append(f"{kind}/{e} is listed but does not restore: {type(ex).__name__}")
  train_epochs = listed(workdir, "train")
  return problems, (train_epochs[-1] if train_epochs else 0)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--kills", type=int, default=24)
  p.add_argument("--epochs", type=int, default=8)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--max_minutes", type=float, default=25.0)
  p.add_argument("--keep", action="store_true", help="keep the temporary folder")
  args = p.parse_args()
  rng = random.Random(args.seed)
  from conftest import toy_dataset
  t_start = time.time()
  root = tempfile.mkdtemp(prefix="fault_test-")
  # Its own compile cache: the runs compile identical programs once.
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(ROOT, ".cache", "jax-fault-test")
  npz = os.path.join(root, "toy.npz")
  toy_dataset().save(npz)

  ref = os.path.join(root, "reference")
  t0 = time.time()
  proc, log = start(command(ref, npz, args.epochs, args.seed), os.path.join(root, "reference.log"))
  rc = proc.wait()
  log.close()
  ref_seconds = time.time() - t0
  if rc != 0:
    sys.exit(f"the reference run failed (rc {rc}); see {root}/reference.log")
  # Once more so that the timing is that of a warm compile cache, as the kills see it.
  shutil.rmtree(ref)
  t0 = time.time()
  proc, log = start(command(ref, npz, args.epochs, args.seed), os.path.join(root, "reference.log"))
  proc.wait()
  log.close()
  ref_seconds = time.time() - t0
  epoch_seconds = max(0.2, (ref_seconds - 10) / args.epochs)
  ref_final = restore(ref, "train", args.epochs)
  ref_sampler = {e: restore(ref, "sampler", e) for e in listed(ref, "sampler")}
  with open(os.path.join(ref, "metrics.jsonl")) as f:
    ref_losses = [{k: v for k, v in json.loads(l).items() if k != "epoch_seconds"} for l in f]

  kills, trials, starts, failures = [], [], 0, []
  modes = ["random", "in-write", "in-epoch"]
  trial, workdir = 0, None
  deadline = t_start + 60 * args.max_minutes
  while len(kills) < args.kills and time.time() < deadline:
    if workdir is None:
      trial += 1
      workdir = os.path.join(root, f"trial_{trial}")
      trials.append({"trial": trial, "kills": 0, "starts": 0})
    mode = modes[len(kills) % len(modes)]
    before = logged_epochs(workdir)
    proc, log = start(command(workdir, npz, args.epochs, args.seed),
                      os.path.join(root, f"trial_{trial}.log"))
    starts += 1
    trials[-1]["starts"] += 1
    t0 = time.time()
    killed, saw_tmp = False, False
    if mode == "random":
      when = t0 + rng.uniform(0, ref_seconds)
      while proc.poll() is None and time.time() < when:
        time.sleep(0.005)
    elif mode == "in-write":
      # Wait for a new temporary folder; past the reference time, fall back to random.
      old = set(tmp_dirs(workdir))
      while proc.poll() is None and time.time() < t0 + 2 * ref_seconds:
        if set(tmp_dirs(workdir)) - old:
          time.sleep(rng.uniform(0, 0.03))
          break
        time.sleep(0.002)
    else:
      n0 = len(before)
      while proc.poll() is None and time.time() < t0 + 2 * ref_seconds:
        if len(logged_epochs(workdir)) > n0:
          time.sleep(rng.uniform(0, epoch_seconds))
          break
        time.sleep(0.005)
    if proc.poll() is None:
      saw_tmp = bool(tmp_dirs(workdir))
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      killed = True
    log.close()
    if killed:
      logged = logged_epochs(workdir)
      problems, newest = check_after_kill(workdir)
      last_logged = logged[-1] if logged else 0
      lost = last_logged - newest
      if lost > 1:
        problems.append(f"the newest training state is epoch {newest} but epoch {last_logged} was logged")
      kills.append({"mode": mode, "trial": trial, "after_s": round(time.time() - t0, 2),
                    "tmp_folder_at_kill": saw_tmp, "last_logged": last_logged,
                    "newest_train_state": newest, "logged_epochs_lost": max(lost, 0),
                    "problems": problems})
      trials[-1]["kills"] += 1
      failures += [f"kill {len(kills)}: {x}" for x in problems]
      print(f"kill {len(kills):2d} ({mode:8s}) at {kills[-1]['after_s']:5.1f}s: logged {last_logged}, "
            f"newest state {newest}, tmp folder {saw_tmp}, problems {problems}", flush=True)
      continue
    if proc.returncode != 0:
      failures.append(f"trial {trial}: the run exited with {proc.returncode} (see trial_{trial}.log)")
      workdir = None
      continue
    # The run completed: it must equal the reference, bit for bit.
    if not same(restore(workdir, "train", args.epochs), ref_final):
      failures.append(f"trial {trial}: final training state differs from the reference")
    got = listed(workdir, "sampler")
    if got != sorted(ref_sampler):
      failures.append(f"trial {trial}: sampler epochs {got} != {sorted(ref_sampler)}")
    for e in got:
      if e in ref_sampler and not same(restore(workdir, "sampler", e), ref_sampler[e]):
        failures.append(f"trial {trial}: sampler checkpoint of epoch {e} differs from the reference")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      losses = [{k: v for k, v in json.loads(l).items() if k != "epoch_seconds"} for l in f]
    if losses != ref_losses:
      failures.append(f"trial {trial}: logged losses differ from the reference")
    if tmp_dirs(workdir):
      failures.append(f"trial {trial}: temporary checkpoint folders left: {tmp_dirs(workdir)}")
    trials[-1]["completed_equal"] = not any(f.startswith(f"trial {trial}:") for f in failures)
    print(f"trial {trial} completed after {trials[-1]['kills']} kills: "
          f"{'equal to the reference' if trials[-1]['completed_equal'] else 'MISMATCH'}", flush=True)
    workdir = None

  # Finish the last trial so that its kills are checked against the reference too.
  if workdir is not None:
    proc, log = start(command(workdir, npz, args.epochs, args.seed), os.path.join(root, f"trial_{trial}.log"))
    rc = proc.wait()
    log.close()
    starts += 1
    if rc != 0 or not same(restore(workdir, "train", args.epochs), ref_final):
      failures.append(f"trial {trial}: the final run failed or differs from the reference")
    else:
      trials[-1]["completed_equal"] = True
      print(f"trial {trial} completed after {trials[-1]['kills']} kills: equal to the reference", flush=True)

  summary = {
      "kills": len(kills), "kills_by_mode": {m: sum(k["mode"] == m for k in kills) for m in modes},
      "kills_with_tmp_folder": sum(k["tmp_folder_at_kill"] for k in kills),
      "kills_after_training_began": sum(k["last_logged"] > 0 or k["newest_train_state"] > 0 for k in kills),
      "max_logged_epochs_lost": max((k["logged_epochs_lost"] for k in kills), default=0),
      "logged_epochs_lost_histogram": {n: sum(k["logged_epochs_lost"] == n for k in kills)
                                       for n in sorted({k["logged_epochs_lost"] for k in kills})},
      "trials": trials, "starts": starts, "epochs": args.epochs,
      "reference_run_seconds": round(ref_seconds, 1), "wall_seconds": round(time.time() - t_start, 1),
      "failures": failures,
  }
  print(json.dumps(summary))
  if not args.keep and not failures:
    shutil.rmtree(root, ignore_errors=True)
  else:
    print(f"files kept in {root}", file=sys.stderr)
  sys.exit(1 if failures or len(kills) < args.kills else 0)


if __name__ == "__main__":
  main()
