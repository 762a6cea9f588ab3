"""Where a training step's time goes: each part of the step jitted and timed alone.

  python benchmarks/profile_step.py [--config=configs/dataset_a.py] [--repeats=7]

Parts (batch 4, default widths): G forward; G forward + backward; D forward on a
real batch with both decoders; D forward + backward (weights) on it; D forward on
a fake batch; augmentation; and the whole step. Medians of `--repeats` timings of
10 calls each, after a warm-up.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (puts the repository on sys.path)

import jax
import jax.numpy as jnp


def timed(f, *args, repeats=7):
  f = jax.jit(f)
  jax.block_until_ready(f(*args))
  out = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(10):
      r = f(*args)
    jax.block_until_ready(r)
    out.append((time.perf_counter() - t) / 10 * 1e3)
  return round(statistics.median(out), 2)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/dataset_a.py")
  p.add_argument("--repeats", type=int, default=7)
  args = p.parse_args()
  from spect_fastgan_jax import augment, input_pipeline, train
  from spect_fastgan_jax import step as step_lib
  config = common.load_config(args.config)
  g, d, state = common.model_and_state(config)
  b = config.batch_size
  key = jax.random.PRNGKey(0)
  z = jax.random.normal(key, (b, config.model.z_dim))
  real3, y, flip, spread = common.step_inputs(config, key)
  nk = jax.random.split(key, b)
  x = jax.random.uniform(key, (b, 64, 64, 1)) * 2 - 1
  off = jnp.zeros((b, 2), jnp.int32)
  gv = {"params": state.g_params, "batch_stats": state.g_stats}
  dv = {"params": state.d_params, "batch_stats": state.d_stats}

  def g_fwd(p):
    return g.apply({"params": p, "batch_stats": gv["batch_stats"]}, z, y, nk, train=True, mutable=["batch_stats"])[0]

  def d_real(p):
    (l, rf, rc), _ = d.apply({"params": p, "batch_stats": dv["batch_stats"]}, x, y, train=True,
                             crop_offsets=off, mutable=["batch_stats"])
    return l.mean() + rf.mean() + rc.mean()

  def d_fake(p):
    return d.apply({"params": p, "batch_stats": dv["batch_stats"]}, x, y, train=True, mutable=["batch_stats"])[0].mean()

  step = step_lib.make_train_step(config, g, d)
  batch = input_pipeline.Batch(real3=real3, cond=y, flip_ok=flip, spread=spread)
  parts = {
      "G forward": timed(g_fwd, gv["params"], repeats=args.repeats),
      "G forward+backward": timed(jax.grad(lambda p: g_fwd(p).mean()), gv["params"], repeats=args.repeats),
      "D forward, real batch with decoders": timed(d_real, dv["params"], repeats=args.repeats),
      "D forward+backward, real batch": timed(jax.grad(d_real), dv["params"], repeats=args.repeats),
      "D forward, fake batch": timed(d_fake, dv["params"], repeats=args.repeats),
      "augmentation": timed(lambda k: augment.augment(k, real3, flip), key, repeats=args.repeats),
      # The new state must be returned: with the metrics alone XLA drops the
      # gradients and updates as dead code.
      "whole train step": timed(lambda s, k: step(s, batch, k), state, key,
                                repeats=args.repeats),
  }
  print(json.dumps({"config": args.config, "backend": jax.default_backend(), "ms": parts}, indent=2))


if __name__ == "__main__":
  main()
