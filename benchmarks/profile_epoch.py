"""Where an epoch's time goes, at a config's widths on the embedded default set.

  python benchmarks/profile_epoch.py [--config=configs/dataset_a.py:cpu] [--repeats=5]

Times, on the devices and threads the process has (set XLA_FLAGS and taskset to
compare 1 and 2 cores):
- the epoch as training runs it (train.make_train_epoch), median of `--repeats`
  epochs after one that compiles; the same step compiled alone, times the steps of
  an epoch; the difference is the host's overhead per step (dispatch, the loop);
- the parts of a step, each jitted alone at the config's batch: G forward and
  forward + backward on B images, G forward on 2B (the mode-seeking term's second
  batch), D forward + backward on the augmented real batch with its decoders (and
  the auxiliary head when loss.condition_aux > 0) and on the fake batch, the EMA
  update, the augmentation;
- the work at an epoch's end: the sampler weights (EMA BatchNorm statistics), both
  checkpoints (saved and waited for) and one monitor scoring.
Medians in ms; the epoch's share of each part is its time times the steps per epoch
over the epoch's time (the parts overlap: a step is not their sum).
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

import jax
import jax.numpy as jnp


def median_ms(f, *args, repeats=5, calls=5):
  """Median over `repeats` of the mean time of `calls` calls of jitted f, after a warm-up."""
  jax.block_until_ready(f(*args))
  out = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(calls):
      r = f(*args)
    jax.block_until_ready(r)
    out.append((time.perf_counter() - t) / calls * 1e3)
  return statistics.median(out)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/dataset_a.py:cpu")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args()
  from spect_fastgan_jax import augment, checkpoints, data, input_pipeline, train, train_state
  from spect_fastgan_jax import step as step_lib
  from spect_fastgan_jax.evaluation import monitor as monitor_lib
  config = common.load_config(args.config)
  config.log.progress = False
  ds = data.load_training_set(config.data, log=lambda m: None)
  levels = config.data.levels
  g, d, state = common.model_and_state(config)
  dev = input_pipeline.device_data(ds, levels, float(config.data.condition_balance))
  steps = input_pipeline.steps_per_epoch(len(ds), config.batch_size)
  b, r = config.batch_size, args.repeats

  # --- The epoch as training runs it, and its step alone. ---
  train_epoch = train.make_train_epoch(config, g, d, len(ds))
  state, _, epoch_s = common.time_epochs(train_epoch, state, dev, r)
  epoch = statistics.median(epoch_s)
  order = input_pipeline.epoch_order(state.key, state.epoch, len(ds), b, dev.weight)
  batch = input_pipeline.gather(dev, order[0])
  step = jax.jit(lambda s, k: step_lib.make_train_step(config, g, d)(s, batch, k))
  step_ms = median_ms(step, state, jax.random.PRNGKey(1), repeats=r)

  # --- The parts of a step. ---
  key = jax.random.PRNGKey(0)
  y = batch.cond
  gv = {"params": state.g_params, "batch_stats": state.g_stats}
  dv = {"params": state.d_params, "batch_stats": state.d_stats}
  d_mutable = ["batch_stats", "intermediates"] if d.aux_head else ["batch_stats"]

  def g_fwd(params, n):
    z = jax.random.normal(key, (n, config.model.z_dim))
    return g.apply({"params": params, "batch_stats": gv["batch_stats"]}, z, jnp.concatenate([y] * (n // b)),
                   jax.random.split(key, n), train=True, mutable=["batch_stats"])[0]

  x = augment.to_model_range(augment.augment(key, batch.real3, batch.flip_ok), g.output_peak)
  off = jnp.zeros((b, 2), jnp.int32)

  def d_real(params):
    (logits, rec_full, rec_crop), _ = d.apply({"params": params, "batch_stats": dv["batch_stats"]}, x, y,
                                              train=True, crop_offsets=off, mutable=d_mutable)
    return logits.mean() + rec_full.mean() + rec_crop.mean()

  def d_fake(params):
    return d.apply({"params": params, "batch_stats": dv["batch_stats"]}, x, y, train=True,
                   mutable=d_mutable)[0].mean()

  ema = lambda e, p: jax.tree_util.tree_map(lambda a, c: 0.999 * a + 0.001 * c, e, p)
  parts = {
      "G forward, B images": median_ms(jax.jit(lambda p: g_fwd(p, b)), gv["params"], repeats=r),
      "G forward + backward, B images": median_ms(jax.jit(jax.grad(lambda p: g_fwd(p, b).mean())),
                                                  gv["params"], repeats=r),
      "G forward + backward, 2B images (mode-seeking pairs)": median_ms(
          jax.jit(jax.grad(lambda p: g_fwd(p, 2 * b).mean())), gv["params"], repeats=r),
      "D forward + backward, real batch with decoders": median_ms(jax.jit(jax.grad(d_real)), dv["params"],
                                                                  repeats=r),
      "D forward + backward, fake batch": median_ms(jax.jit(jax.grad(d_fake)), dv["params"], repeats=r),
      "EMA update of G": median_ms(jax.jit(ema), state.ema_params, state.g_params, repeats=r),
      "augmentation of the real batch": median_ms(
          jax.jit(lambda k: augment.augment(k, batch.real3, batch.flip_ok)), key, repeats=r),
  }

  # --- The end of an epoch: sampler weights, checkpoints, monitor. ---
  sampler_fn = train_state.make_sampler_fn(config, g)
  sampler_ms = median_ms(lambda: sampler_fn(state, dev.cond, dev.weight), repeats=r, calls=1)
  g_vars = sampler_fn(state, dev.cond, dev.weight)
  with tempfile.TemporaryDirectory() as tmp:
    ckpt = checkpoints.RunCheckpoints(tmp, 3)
    save_s = []
    for e in range(1, r + 2):
      t = time.perf_counter()
      ckpt.save(e, state, g_vars)
      ckpt.wait()
      save_s.append(time.perf_counter() - t)
    ckpt.close()
    monitor = monitor_lib.Monitor(config, tmp, ds, g, int(config.log.monitor_per_condition))
    monitor(g_vars)   # compiles the sampler
    monitor_s = statistics.median(monitor(g_vars)["monitor_seconds"] for _ in range(r))
  end = {"sampler weights (every epoch)": sampler_ms,
         "both checkpoints, saved and waited for (every epoch)": 1e3 * statistics.median(save_s[1:]),
         f"monitor scoring (every {config.log.monitor_every_epochs} epochs)": 1e3 * monitor_s}

  report = {
      "config": args.config, "backend": jax.default_backend(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "cpus_usable": len(os.sched_getaffinity(0)),
      "steps_per_epoch": steps, "batch_size": b,
      "epoch_s": {"median": epoch, "runs": epoch_s},
      "step_alone_ms": step_ms,
      "host_overhead_ms_per_step": 1e3 * epoch / steps - step_ms,
      "parts_ms": parts, "epoch_end_ms": end,
  }
  print(json.dumps(report, indent=1))
  print(f"\nepoch {epoch:.2f} s = {steps} steps x {1e3 * epoch / steps:.1f} ms; the step alone {step_ms:.1f} ms "
        f"(host overhead {1e3 * epoch / steps - step_ms:.1f} ms a step, "
        f"{100 * (1 - steps * step_ms / 1e3 / epoch):.0f} % of the epoch)")
  for name, ms in parts.items():
    print(f"  {name}: {ms:.2f} ms ({100 * steps * ms / 1e3 / epoch:.0f} % of an epoch's steps)")
  for name, ms in end.items():
    print(f"  {name}: {ms / 1e3:.2f} s")


if __name__ == "__main__":
  main()
