"""The diversity curve: fidelity of a fixed small sample, scored during training.

Conditional mode collapse shows within 5-10 epochs (docs/fidelity.md), long before
a run ends. Every `log.monitor_every_epochs` epochs training hands the sampler
weights to a `Monitor`, which generates `log.monitor_per_condition` images of
every condition the data has (fixed sample indices, so the curve follows one
set of latents) and scores them with the evaluation's own metrics and cached
classifier: the diversity ratio per condition, the condition accuracy, the
pixel-wise SD ratio and the brain's left/right centroid offset.

The monitor samples G as it is, whatever `sample.symmetric_flip` says: it watches what
training teaches G, and a random mirror of the normal and bilateral images would hide
the left/right tilt the centroid offset measures (and add the mirror's variety to
theirs). `select` and `evaluate` sample as the config says.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from spect_fastgan_jax import conditions, sample
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.evaluation import classifier, metrics, score
from spect_fastgan_jax.evaluation.report import real_group


class Monitor:
  """Everything that does not change between epochs, prepared once: the real
  group, the classifier (trained once per data set, cached under the workdir),
  the real MS-SSIM, the compiled generator and the fixed latents."""

  def __init__(self, config, workdir: str, ds: SliceDataset, g, per_condition: int,
               log: Callable[[str], None] = lambda m: None):
    ecfg = config.evaluate
    self.levels = conditions.check_levels(config.data.levels)
    self.pairs = int(ecfg.ms_ssim_pairs)
    self.min_diversity = float(ecfg.select.min_diversity)
    self.real = real_group(ds)
    self.ref = classifier.reference(ds, ecfg.classifier, classifier.cache_dir(workdir), log)
    self.real_ms = score.real_ms_ssim(self.real, self.pairs)
    keys = [c for c in self.real.conditions() if self.real.mask(c[1], c[0]).sum() >= 2]
    # Weighted as the sample is, one share per condition: unilateral defects move the
    # centroid by design, and the real set has more of some conditions than others.
    self.real_centroid = float(np.mean([
        metrics.column_centroid(self.real.images[self.real.mask(p, l)]).mean() for l, p in keys]))
    self.lv = np.array([l for l, _ in keys for _ in range(per_condition)])
    self.pt = np.array([p for _, p in keys for _ in range(per_condition)])
    sided = conditions.side_conditioned(config.data)
    # A side-conditioned run draws its unilateral defects left and right in turn.
    self.cond = conditions.encode(self.levels, self.lv, self.pt,
                                  conditions.slot_sides(self.pt) if sided else None, sided)
    self.index = np.arange(len(self.lv), dtype=np.int32)
    self.seed = int(ecfg.seed)
    self.z_dim = int(config.model.z_dim)
    self.g = g
    self.generate_fn = sample.make_generate_fn(g, self.z_dim)  # plain: see the module docstring

  def __call__(self, g_vars) -> dict:
    """Scores of the sampler weights `g_vars`: `score_images` of the fixed sample, and
    "monitor_seconds", the time it took."""
    t = time.perf_counter()
    images = sample.generate(self.g, g_vars, self.cond, self.seed, self.index, self.z_dim,
                             batch_size=len(self.index), generate_fn=self.generate_fn)
    return {**self.score_images(images), "monitor_seconds": time.perf_counter() - t}

  def score_images(self, images: np.ndarray) -> dict:
    """images: [N, 64, 64], one per row of the fixed sample (conditions self.lv, self.pt)
    -> {"diversity_min", "diversity_mean", "accuracy", "sd_ratio_min", "sd_ratio_max",
    "centroid_offset_px"}."""
    fake = score.Group("generated", images, self.lv, self.pt)
    pred = self.ref.trained.predict(fake.images)
    acc = classifier.score(pred, fake.level, fake.pattern, None, self.levels)
    per = [score.variety(self.real.images[self.real.mask(p, l)], fake.images[fake.mask(p, l)],
                         self.real_ms[f"{l}/{p}"], self.pairs) for l, p in fake.conditions()]
    div = [v["diversity_ratio"] for v in per]
    sd = [v["sd_ratio"] for v in per]
    return {"diversity_min": float(np.min(div)), "diversity_mean": float(np.mean(div)),
            "accuracy": float(acc["overall"]),
            "sd_ratio_min": float(np.min(sd)), "sd_ratio_max": float(np.max(sd)),
            "centroid_offset_px": float(np.mean(metrics.column_centroid(images))) - self.real_centroid}

  def warning(self, scores: dict) -> str | None:
    """A line for the log when the sample's diversity is below the selection threshold."""
    if scores["diversity_min"] < self.min_diversity:
      return (f"diversity ratio {scores['diversity_min']:.2f} in the least varied condition is below "
              f"{self.min_diversity} (evaluate.select.min_diversity): the generator may be collapsing")
    return None
