"""Generated images of a run's epoch, as many per condition as the real data has."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from spect_fastgan_jax import checkpoints, conditions, models, sample
from spect_fastgan_jax.evaluation.score import Group


@dataclasses.dataclass
class RunSampler:
  """One run's generator, compiled once and reused for every epoch it scores."""
  config: object            # the run's ConfigDict (config.json)
  workdir: str
  generator: models.Generator
  shapes: object
  generate_fn: Callable

  @staticmethod
  def of(run_config, workdir: str) -> "RunSampler":
    g, _ = models.from_config(run_config.model)
    return RunSampler(run_config, workdir, g, sample.generator_shapes(g, run_config),
                      sample.generate_fn_of(g, run_config))

  def images(self, epoch: int, counts: dict[tuple[str, str], int], seed: int, name: str,
             batch_size: int = 256) -> Group:
    """Group of counts[(level, pattern)] images per condition from the sampler
    checkpoint of `epoch`; sample indices 0..N-1 of `seed` (reproducible)."""
    levels = conditions.check_levels(self.config.data.levels)
    g_vars = checkpoints.restore_sampler(self.workdir, epoch, self.shapes)
    lv, pt = conditions.expand_counts(counts)
    cond = conditions.encode(levels, lv, pt)
    # A fixed batch size keeps one compiled program for every epoch and count.
    imgs = sample.generate(self.generator, g_vars, cond, seed, np.arange(len(lv), dtype=np.int32),
                           int(self.config.model.z_dim), batch_size=batch_size,
                           generate_fn=self.generate_fn)
    return Group(name, imgs, lv, pt)


def real_counts(real: Group) -> dict[tuple[str, str], int]:
  """Images per (level, pattern) of the real group: the paper generates as many (Table 1)."""
  return {(l, p): int(real.mask(p, l).sum()) for l, p in real.conditions()}
