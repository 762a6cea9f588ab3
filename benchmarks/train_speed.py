"""Training speed of the default config: compile time, steps/s, images/s, FLOPs.

  python benchmarks/train_speed.py [--config=configs/dataset_a.py] [--repeats=5] [--steps=40]

Runs one compiled epoch program (lax.scan over `--steps` steps) `--repeats` times
after a warm-up and reports the median. Also measures a float32 matmul through
XLA on the same device as a ceiling for achievable FLOP/s. Uses random data of
the Table 1 size so that it needs no data set on disk.
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
import numpy as np


def matmul_ceiling(n=1024, repeats=5):
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(10):
      out = f(a)
    out.block_until_ready()
    times.append((time.perf_counter() - t) / 10)
  return 2 * n ** 3 / statistics.median(times)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/dataset_a.py")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--steps", type=int, default=40)
  p.add_argument("--json", default="")
  p.add_argument("--train_loop", default="auto", choices=["auto", "scan", "steps"])
  p.add_argument("--num_seeds", type=int, default=1, help="seeds trained side by side (vmap)")
  p.add_argument("--dtype", default="", help="override config.model.dtype (float32 | bfloat16)")
  args = p.parse_args()

  from spect_fastgan_jax import conditions, models, train
  from spect_fastgan_jax.data.dataset import SliceDataset
  config = common.load_config(args.config)
  if args.dtype:
    config.model.dtype = args.dtype
  levels = conditions.check_levels(config.data.levels)
  b = config.batch_size
  n = args.steps * b
  rng = np.random.default_rng(0)
  pairs = conditions.all_conditions(levels)
  lv, pt = zip(*[pairs[i % len(pairs)] for i in range(n)])
  ds = SliceDataset(slices=rng.uniform(1, 100, (n, 3, 64, 64)).astype(np.float32), level=lv, pattern=pt,
                    side=["none"] * n, subject=[str(i) for i in range(n)])
  g, d = models.from_config(config.model, conditions.condition_dim(levels))
  state = train.create_train_state(config, g, d)
  data = train.device_data(ds, levels)
  loop = train.resolve_train_loop(args.train_loop)
  epoch_fn = train.make_train_epoch(config, g, d, n, train_loop=loop, num_seeds=args.num_seeds)
  single_state = state
  if args.num_seeds > 1:
    seeds = []
    for i in range(args.num_seeds):
      config.seed = i
      seeds.append(train.create_train_state(config, g, d))
    state = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *seeds)

  # FLOPs of one step, from XLA's cost analysis of the jitted step alone.
  step = jax.jit(train.make_train_step(config, g, d))
  idx = jnp.arange(b)
  cost = step.lower(single_state, data.slices[idx], data.cond[idx], data.flip_ok[idx],
                    jax.random.PRNGKey(0)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops_per_step = float(cost.get("flops", float("nan"))) if cost else float("nan")

  t = time.perf_counter()
  state, m = epoch_fn(state, data)  # compiles, then warms up
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t
  rates = []
  for _ in range(args.repeats):
    t = time.perf_counter()
    state, m = epoch_fn(state, data)
    jax.block_until_ready(m)
    rates.append(args.steps / (time.perf_counter() - t))
  steps_s = statistics.median(rates)
  ceiling = matmul_ceiling()
  steps_per_epoch = 938 // b if len(levels) == 3 else 290 // b
  out = {
      "config": args.config, "device": str(jax.devices()[0]), "backend": jax.default_backend(),
      "train_loop": loop, "batch_size": b, "num_seeds": args.num_seeds, "dtype": config.model.dtype,
      "compile_and_first_epoch_s": round(compile_s, 2),
      "steps_per_s_median": round(steps_s, 3), "steps_per_s_runs": [round(r, 3) for r in rates],
      "images_per_s": round(steps_s * b * args.num_seeds, 2),
      "gflop_per_step": round(flops_per_step / 1e9, 2),
      "achieved_gflop_s": round(steps_s * args.num_seeds * flops_per_step / 1e9, 1),
      "matmul_ceiling_gflop_s": round(ceiling / 1e9, 1),
      "fraction_of_ceiling": round(steps_s * args.num_seeds * flops_per_step / ceiling, 3),
      "projected_1000_epochs_h": round(1000 * steps_per_epoch / steps_s / 3600, 2),
  }
  print(json.dumps(out, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
