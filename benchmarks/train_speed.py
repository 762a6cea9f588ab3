"""Training speed of the default config: compile time, steps/s, images/s, FLOPs, sampling, memory.

  python benchmarks/train_speed.py [--config=configs/dataset_a.py] [--repeats=5] [--steps=40]

Runs one compiled epoch program (lax.scan over `--steps` steps) `--repeats` times
after a warm-up and reports the median. Also measures a float32 matmul through
XLA on the same device as a ceiling for achievable FLOP/s, the sampler's images/s
(eval-mode generator, `--sample_batch` images per call) and peak host and device
memory. FLOPs are given as compiled and as the network is written (every
convolution a convolution; config.model.conv_impl="xla"), the fixed reference for
comparing lowerings. Uses random data so that it needs no data set on disk.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (puts the repository on sys.path)

import jax
import jax.numpy as jnp
import ml_collections
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


def sampling_rate(g, state, config, cond_dim, batch, repeats):
  """Images/s of the sampler (eval-mode G, one compiled batch), median of `repeats`."""
  from spect_fastgan_jax import sample
  fn = sample.make_generate_fn(g, config.model.z_dim)
  g_vars = {"params": state.g_params, "batch_stats": state.g_stats}
  cond = jnp.zeros((batch, cond_dim)).at[:, 0].set(1)
  index = jnp.arange(batch, dtype=jnp.int32)
  fn(g_vars, cond, jnp.uint32(0), index).block_until_ready()
  rates = []
  for r in range(repeats):
    t = time.perf_counter()
    fn(g_vars, cond, jnp.uint32(r + 1), index).block_until_ready()
    rates.append(batch / (time.perf_counter() - t))
  return statistics.median(rates)


def xla_flops(lowered) -> float:
  """FLOPs of a lowered jitted function by XLA's cost analysis of its compiled form
  (2 per multiply-add); NaN where the backend gives none."""
  cost = lowered.compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/dataset_a.py")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--steps", type=int, default=40)
  p.add_argument("--json", default="")
  p.add_argument("--train_loop", default="auto", choices=["auto", "scan", "steps"])
  p.add_argument("--num_seeds", type=int, default=1, help="seeds trained side by side (vmap)")
  p.add_argument("--dtype", default="", help="override config.model.dtype (float32 | bfloat16)")
  p.add_argument("--conv_impl", default="", help="override config.model.conv_impl (auto | xla | matmul)")
  p.add_argument("--sample_batch", type=int, default=1024, help="batch of the sampling measurement")
  args = p.parse_args()

  from spect_fastgan_jax import conditions, input_pipeline, layers, models, train, train_state
  from spect_fastgan_jax import step as step_lib
  from spect_fastgan_jax.data.dataset import SliceDataset
  config = common.load_config(args.config)
  if args.dtype:
    config.model.dtype = args.dtype
  if args.conv_impl:
    config.model.conv_impl = args.conv_impl
  levels = conditions.check_levels(config.data.levels)
  b = config.batch_size
  n = args.steps * b
  rng = np.random.default_rng(0)
  pairs = conditions.all_conditions(levels)
  lv, pt = zip(*[pairs[i % len(pairs)] for i in range(n)])
  ds = SliceDataset(slices=rng.uniform(1, 100, (n, 3, 64, 64)).astype(np.float32), level=lv, pattern=pt,
                    side=["none"] * n, subject=[str(i) for i in range(n)])
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d)
  data = input_pipeline.device_data(ds, levels)
  loop = train.resolve_train_loop(args.train_loop)
  epoch_fn = train.make_train_epoch(config, g, d, n, train_loop=loop, num_seeds=args.num_seeds)
  single_state = state
  if args.num_seeds > 1:
    seeds = []
    for i in range(args.num_seeds):
      config.seed = i
      seeds.append(train_state.create_train_state(config, g, d))
    state = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *seeds)

  # FLOPs of one step, from XLA's cost analysis of the jitted step alone: as
  # compiled (conv_impl as configured) and as the network is written (every
  # convolution a convolution, conv_impl="xla"), the reference for FLOP/s.
  def step_flops(conv_impl):
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model.conv_impl = conv_impl
    gi, di = models.from_config(cfg.model)
    idx = jnp.arange(b)
    step = step_lib.make_train_step(cfg, gi, di)
    return xla_flops(jax.jit(step).lower(single_state, input_pipeline.gather(data, idx),
                                         jax.random.PRNGKey(0)))

  def forward_flops_per_image():
    """G's and D's (real batch, with both decoders) forward FLOPs per image in
    training mode, as the network is written (conv_impl="xla"): the README's "The
    model" table."""
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model.conv_impl = "xla"
    gi, di = models.from_config(cfg.model)
    g_vars = {"params": single_state.g_params, "batch_stats": single_state.g_stats}
    d_vars = {"params": single_state.d_params, "batch_stats": single_state.d_stats}
    c = conditions.condition_dim(levels)
    z, y = jnp.zeros((b, cfg.model.z_dim)), jnp.zeros((b, c))
    keys = jax.random.split(jax.random.PRNGKey(0), b)
    x, offsets = jnp.zeros((b, 64, 64, 1)), jnp.zeros((b, 2), jnp.int32)
    # Inputs as arguments, not closed over: XLA would fold constant inputs away.
    g_fn = lambda v, z, y, k: gi.apply(v, z, y, k, train=True, mutable=["batch_stats"])
    d_fn = lambda v, x, y, o: di.apply(v, x, y, train=True, mutable=["batch_stats"], crop_offsets=o)
    return (xla_flops(jax.jit(g_fn).lower(g_vars, z, y, keys)) / b,
            xla_flops(jax.jit(d_fn).lower(d_vars, x, y, offsets)) / b)

  conv_impl = layers.resolve_conv_impl(config.model.conv_impl)
  g_flops_image, d_flops_image = forward_flops_per_image()
  flops_per_step = step_flops(conv_impl)
  model_flops_per_step = flops_per_step if conv_impl == "xla" else step_flops("xla")

  state, compile_s, times = common.time_epochs(epoch_fn, state, data, args.repeats)  # compiles first
  rates = [args.steps / t for t in times]
  steps_s = statistics.median(rates)
  ceiling = matmul_ceiling()
  sample_rate = sampling_rate(g, state if args.num_seeds == 1 else single_state, config,
                              conditions.condition_dim(levels), args.sample_batch, args.repeats)
  stats = jax.devices()[0].memory_stats() or {}
  steps_per_epoch = 938 // b if len(levels) == 3 else 290 // b
  out = {
      "config": args.config, "device": str(jax.devices()[0]), "backend": jax.default_backend(),
      "train_loop": loop, "batch_size": b, "num_seeds": args.num_seeds, "dtype": config.model.dtype,
      "conv_impl": conv_impl,
      "compile_and_first_epoch_s": round(compile_s, 2),
      "steps_per_s_median": round(steps_s, 3), "steps_per_s_runs": [round(r, 3) for r in rates],
      "images_per_s": round(steps_s * b * args.num_seeds, 2),
      "g_forward_gflop_per_image": round(g_flops_image / 1e9, 3),
      "d_forward_gflop_per_image": round(d_flops_image / 1e9, 3),
      "gflop_per_step": round(flops_per_step / 1e9, 2),
      "achieved_gflop_s": round(steps_s * args.num_seeds * flops_per_step / 1e9, 1),
      "network_gflop_per_step": round(model_flops_per_step / 1e9, 2),
      "network_gflop_s": round(steps_s * args.num_seeds * model_flops_per_step / 1e9, 1),
      "matmul_ceiling_gflop_s": round(ceiling / 1e9, 1),
      "fraction_of_ceiling": round(steps_s * args.num_seeds * flops_per_step / ceiling, 3),
      "network_fraction_of_ceiling": round(steps_s * args.num_seeds * model_flops_per_step / ceiling, 3),
      "projected_1000_epochs_h": round(1000 * steps_per_epoch / steps_s / 3600, 2),
      "sampling_images_per_s": round(sample_rate, 1),
      "sampling_batch": args.sample_batch,
      "peak_host_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "peak_device_memory_mb": (round(stats["peak_bytes_in_use"] / 2 ** 20, 1)
                                if "peak_bytes_in_use" in stats else None),
  }
  print(json.dumps(out, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
