"""Times building the full default simulated data set (Table 1: 938 slices) and
prints its per-(level, pattern) mean counts and left/right ratios.

Each timed run is a fresh Python process (cold: imports, nilearn's templates, the
phantom), building without the cache; the report gives the median. Then the
cache: a first call that builds and writes it, a second that only loads it.

  python benchmarks/build_dataset.py [--runs 3] [--seed 0]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def one_build(seed: int) -> dict:
  """Builds the default set once in this process; returns the timings (s)."""
  t0 = time.perf_counter()
  from configs import data as data_config
  from spect_fastgan_jax.data import simulate
  cfg = data_config.get_config()
  cfg.simulation.seed = seed
  t1 = time.perf_counter()
  ds = simulate.simulate(cfg.simulation, log=lambda s: None)
  t2 = time.perf_counter()
  return {"imports_s": t1 - t0, "build_s": t2 - t1, "process_s": t2 - START, "slices": len(ds)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(one_build(args.seed)))
    return

  print(f"CPU cores: {os.cpu_count()}")
  runs = []
  for i in range(args.runs):
    out = subprocess.run([sys.executable, __file__, "--child", "--seed", str(args.seed)],
                         check=True, capture_output=True, text=True).stdout
    runs.append(json.loads(out.strip().splitlines()[-1]))
    r = runs[-1]
    print(f"run {i + 1}: {r['slices']} slices, build {r['build_s']:.2f} s (imports "
          f"{r['imports_s']:.2f} s, whole process {r['process_s']:.2f} s)")
  for key in ("build_s", "process_s"):
    print(f"median {key[:-2]}: {statistics.median(r[key] for r in runs):.2f} s over {len(runs)} runs")

  from configs import data as data_config
  from spect_fastgan_jax.data import source, stats
  cfg = data_config.get_config()
  cfg.simulation.seed = args.seed
  with tempfile.TemporaryDirectory() as cache:
    cfg.cache_dir = cache
    t = time.perf_counter()
    source.simulated_set(cfg, log=lambda s: None)
    first = time.perf_counter() - t
    t = time.perf_counter()
    ds = source.simulated_set(cfg, log=lambda s: None)
    second = time.perf_counter() - t
  print(f"cache: first call (build + write) {first:.2f} s, second call (load) {second:.2f} s")
  print()
  print("MC = mean of the max-normalised centre slice; LR = patient-left / patient-right counts")
  print(stats.format_table(stats.describe(ds)))
  for pattern in ("normal", "unilateral", "bilateral"):
    m = ds.pattern == pattern
    lr = stats.lr_ratio(ds.slices[m, 1])
    mc = stats.mean_counts(ds.slices[m, 1])
    print(f"all levels {pattern:10}: n={int(m.sum())} MC {mc.mean():.3f}+/-{mc.std():.3f} "
          f"LR {lr.mean():.3f}+/-{lr.std():.3f}")


if __name__ == "__main__":
  main()
