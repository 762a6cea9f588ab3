"""How the brightness of generated slices is distributed, against the real slices.

    python experiments/fidelity/intensity_shape.py --workdir=runs/dataset_a_cpu --epoch=120

Generates as many images per condition as the real set has (sample indices 0..N-1 of
seed 0, as evaluate does) and prints, for real and generated: MC (mean of the
max-normalised slice), the mean 99th and 90th percentiles of the max-normalised slice,
max / p99, and for the generated images the raw output before max-normalisation (its mean
and its peak, in the training range where a real slice's maximum is 1). docs/fidelity.md
uses it to tell a too-low peak from a differently shaped top of the histogram, and the
pixel noise (a pixel less its 3x3 neighbourhood's mean) by brightness: its SD and
skewness, which show G's tanh squeezing the noise of its brightest pixels.
"""

import argparse
import json
import sys

import study_common  # noqa: F401  (puts the repository on sys.path)
import ml_collections
import numpy as np


def describe(x: np.ndarray) -> dict:
  from scipy import ndimage, stats
  from spect_fastgan_jax.evaluation import metrics
  x = metrics.normalise(x)
  n = x.reshape(len(x), -1)
  p99, p90 = np.percentile(n, 99, axis=1), np.percentile(n, 90, axis=1)
  # The pixel noise: each pixel less the mean of its 3x3 neighbourhood, by how bright
  # that neighbourhood is. Its SD and skewness in the hottest band show whether the
  # brightest pixels stand out of their surroundings as a real slice's do.
  local = ndimage.uniform_filter(x, size=(1, 3, 3), mode="nearest")
  residual = x - local
  noise = {}
  for lo, hi in ((0.3, 0.5), (0.5, 0.7), (0.7, 1.0)):
    r = residual[(local > lo) & (local <= hi)]
    noise[f"{lo}-{hi}"] = {"sd": round(float(r.std()), 4), "skew": round(float(stats.skew(r)), 3),
                           "pixels_per_slice": round(r.size / len(x))}
  return {"MC": round(float(n.mean()), 4), "p99": round(float(p99.mean()), 3),
          "p90": round(float(p90.mean()), 3), "max/p99": round(float(np.mean(1 / p99)), 3),
          "noise_by_local_mean": noise}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--epoch", type=int, required=True)
  args = p.parse_args()
  import jax
  import jax.numpy as jnp
  from spect_fastgan_jax import checkpoints, conditions, data, modes, models, sample
  from spect_fastgan_jax.evaluation.report import real_group
  cfg = modes.run_config(ml_collections.ConfigDict(), args.workdir)
  real = real_group(data.load_training_set(cfg.data, log=lambda m: print(m, file=sys.stderr)))
  g, _ = models.from_config(cfg.model)
  g_vars = checkpoints.restore_sampler(args.workdir, args.epoch, sample.generator_shapes(g, cfg))
  cond = conditions.encode(cfg.data.levels, real.level, real.pattern)
  z_keys, noise_keys = sample.sample_keys(0, jnp.arange(len(cond)))
  z = jax.vmap(lambda k: jax.random.normal(k, (cfg.model.z_dim,)))(z_keys)
  raw = []
  for s in range(0, len(cond), 256):
    out = g.apply(g_vars, z[s:s + 256], jnp.asarray(cond[s:s + 256]), noise_keys[s:s + 256], train=False)
    raw.append(np.asarray((out[..., 0] + 1.0) / (1.0 + g.output_peak)))  # a real slice's max -> 1
  raw = np.concatenate(raw)
  peaks = raw.reshape(len(raw), -1).max(axis=1)
  print(json.dumps({"real": describe(real.images), "generated": describe(raw),
                    "generated_raw": {"mean": round(float(raw.mean()), 4),
                                      "peak_mean": round(float(peaks.mean()), 3),
                                      "peak_p5": round(float(np.percentile(peaks, 5)), 3),
                                      "peak_p95": round(float(np.percentile(peaks, 95)), 3)}}, indent=1))


if __name__ == "__main__":
  main()
