"""Seconds per training epoch as a run spends them, for comparing time-to-fidelity levers.

  python benchmarks/epoch_time.py [--config=configs/dataset_a.py:cpu] [--epochs=3]
      [--set=loss.mode_seeking_pairs=1 ...] [--host_devices=2] [--threads=1]

Builds the run's networks, data (the embedded default, training subjects) and epoch
program exactly as training does (train.make_train_epoch, on a mesh of the visible
devices), compiles it with one epoch, then times `--epochs` more. Also times the work at
an epoch's end that the config asks for: the sampler weights and both checkpoints (every
`checkpoint.sampler_every_epochs` epochs) and the monitor (every
`log.monitor_every_epochs`), spread over the epochs they serve. Prints one JSON line.

`--host_devices=N` splits the CPU into N XLA devices, each batch split over them (the
config's `num_devices` -1 takes them all); `--threads=T` gives each device T threads
(XLA's intra-op threads; 0: XLA's default, every core the process may use). Both must be
set before JAX starts, so this script sets XLA_FLAGS itself; run it under `taskset` to
limit the cores.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (puts the repository on sys.path)


def parse_value(text: str):
  """'2' -> 2, '0.5' -> 0.5, 'true' -> True, anything else stays text."""
  low = text.lower()
  if low in ("true", "false"):
    return low == "true"
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def apply_overrides(config, pairs):
  """Sets each 'block.field=value' of `pairs` on `config`; an unknown field is an error."""
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep:
      raise SystemExit(f"--set wants block.field=value, got {pair!r}")
    *blocks, name = key.split(".")
    target = config
    for part in blocks:
      if part not in target:
        raise SystemExit(f"--set: the config has no field {key!r}")
      target = target[part]
    if name not in target:
      raise SystemExit(f"--set: the config has no field {key!r}")
    target[name] = parse_value(value)
  return config


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/dataset_a.py:cpu")
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--set", action="append", default=[], help="block.field=value (repeatable)")
  p.add_argument("--host_devices", type=int, default=1)
  p.add_argument("--threads", type=int, default=0)
  args = p.parse_args()
  flags = [f"--xla_force_host_platform_device_count={args.host_devices}"]
  if args.threads:
    flags += ["--xla_cpu_multi_thread_eigen=false", f"intra_op_parallelism_threads={args.threads}"]
  os.environ["XLA_FLAGS"] = " ".join(flags)

  import jax
  from spect_fastgan_jax import checkpoints, data, input_pipeline, sharding, train, train_state
  from spect_fastgan_jax.evaluation import monitor as monitor_lib

  config = apply_overrides(common.load_config(args.config), args.set)
  train.check_config(config)
  config.log.progress = False
  ds = data.load_training_set(config.data, log=lambda m: None)
  mesh = sharding.make_mesh(config.num_devices, config.batch_size)
  g, d, state = common.model_and_state(config)
  dev = sharding.replicate(input_pipeline.device_data(
      ds, config.data.levels, float(config.data.condition_balance)), mesh)
  state = sharding.replicate(state, mesh)
  train_epoch = train.make_train_epoch(config, g, d, len(ds), mesh=mesh)
  state, compile_s, epoch_s = common.time_epochs(train_epoch, state, dev, args.epochs)

  sampler_fn = train_state.make_sampler_fn(config, g)
  jax.block_until_ready(sampler_fn(state, dev.cond, dev.weight))
  t = time.perf_counter()
  g_vars = jax.block_until_ready(sampler_fn(state, dev.cond, dev.weight))
  sampler_s = time.perf_counter() - t
  with tempfile.TemporaryDirectory() as tmp:
    ckpt = checkpoints.RunCheckpoints(tmp, int(config.checkpoint.keep_train_states))
    save_s = []
    for e in range(1, 4):
      t = time.perf_counter()
      ckpt.save(e, state, g_vars)
      ckpt.wait()
      save_s.append(time.perf_counter() - t)
    ckpt.close()
    monitor_s = 0.0
    if config.log.monitor_every_epochs:
      monitor = monitor_lib.Monitor(config, tmp, ds, g, int(config.log.monitor_per_condition))
      monitor(g_vars)  # compiles
      monitor_s = monitor(g_vars)["monitor_seconds"]

  every_sampler = int(config.checkpoint.sampler_every_epochs) or 10**9
  every_monitor = int(config.log.monitor_every_epochs) or 10**9
  epoch = statistics.median(epoch_s)
  # Sampler weights are made whenever a checkpoint, the grid or the monitor needs them.
  sampler_every = min(every_sampler, every_monitor, int(config.log.sample_every_epochs) or 10**9)
  end = (sampler_s / sampler_every + statistics.median(save_s[1:]) + monitor_s / every_monitor)
  steps = input_pipeline.steps_per_epoch(len(ds), config.batch_size)
  print(json.dumps({
      "config": args.config, "set": args.set, "host_devices": args.host_devices,
      "devices_used": mesh.size, "threads": args.threads or "default",
      "cpus_usable": len(os.sched_getaffinity(0)), "batch_size": config.batch_size,
      "steps_per_epoch": steps, "compile_and_first_epoch_s": round(compile_s, 1),
      "epoch_s_median": round(epoch, 2), "epoch_s_runs": [round(x, 2) for x in epoch_s],
      "images_per_s": round(steps * config.batch_size / epoch, 1),
      "sampler_weights_s": round(sampler_s, 2), "checkpoints_s": round(statistics.median(save_s[1:]), 2),
      "monitor_s": round(monitor_s, 2), "epoch_end_s_per_epoch": round(end, 2),
      "wall_s_per_epoch": round(epoch + end, 2),
      "wall_min_per_120_epochs": round((epoch + end) * 120 / 60, 1)}))


if __name__ == "__main__":
  main()
