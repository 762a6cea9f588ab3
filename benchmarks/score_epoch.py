"""Time to score one epoch for --mode=select at Table 1 counts (938 images, dataset 'A').

  python benchmarks/score_epoch.py [--config=configs/dataset_a.py] [--repeats=5]

Builds a throw-away workdir holding `--repeats` + 1 sampler checkpoints of a
default-width generator (random weights: scoring costs the same for any weights),
then scores them one by one as `select` does: restore, generate 938 images,
classify them, Frechet/kernel distances, MS-SSIM, MC/LR statistics. The first
epoch also compiles the generator and MS-SSIM programs; the median of the others
is the per-epoch figure the issue bounds at 30 s on 2 CPU cores. The condition
classifier is trained once per data set (cached) and timed separately.
"""

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/dataset_a.py")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args()

  from spect_fastgan_jax import checkpoints, conditions, data, models
  from spect_fastgan_jax import workdir as workdir_lib
  from configs import evaluate as eval_config
  from spect_fastgan_jax.evaluation import select

  module = os.path.splitext(args.config)[0].replace("/", ".")
  config = importlib.import_module(module).get_config()
  ecfg = eval_config.get_config()
  ds = data.load_training_set(config.data, log=lambda m: None)
  c = conditions.condition_dim(config.data.levels)
  g, _ = models.from_config(config.model)
  with tempfile.TemporaryDirectory() as workdir:
    workdir_lib.write_run_config(workdir, config, ds)
    ckpt = checkpoints.RunCheckpoints(workdir)
    for epoch in range(1, args.repeats + 2):
      k = jax.random.PRNGKey(epoch)
      g_vars = g.init({"params": k}, jnp.zeros((1, config.model.z_dim)), jnp.zeros((1, c)),
                      jax.random.split(k, 1), train=False)
      ckpt.save(epoch, None, g_vars)
    ckpt.wait()
    ckpt.close()

    t = time.perf_counter()
    scorer = select.Scorer(config, workdir, ds, ecfg, os.path.join(workdir, "classifiers"))
    setup_s = time.perf_counter() - t
    times = []
    for epoch in range(1, args.repeats + 2):
      t = time.perf_counter()
      scorer.score(epoch)
      times.append(time.perf_counter() - t)
  result = {"images_per_epoch": len(ds), "cpu_cores": os.cpu_count(), "device": str(jax.devices()[0]),
            "setup_s (classifier training + real features, once per data set)": round(setup_s, 1),
            "first_epoch_s (with compilation)": round(times[0], 2),
            "per_epoch_s_median": round(statistics.median(times[1:]), 2),
            "per_epoch_s_all": [round(x, 2) for x in times]}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
