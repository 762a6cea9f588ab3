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
             batch_size: int = 256, near_copy: sample.NearCopyTest | None = None) -> Group:
    """Group of counts[(level, pattern)] images per condition from the sampler
    checkpoint of `epoch`; sample indices 0..N-1 of `seed` (reproducible). With
    `near_copy`, near-copies are replaced by further indices as --mode=sample does
    (sample.draw_without_near_copies)."""
    levels = conditions.check_levels(self.config.data.levels)
    g_vars = checkpoints.restore_sampler(self.workdir, epoch, self.shapes)
    lv, pt = conditions.expand_counts(counts)

    def generate_rows(l, p, index):
      # A fixed batch size keeps one compiled program for every epoch and count.
      return sample.generate(self.generator, g_vars, conditions.encode(levels, l, p), seed, index,
                             int(self.config.model.z_dim), batch_size=batch_size,
                             generate_fn=self.generate_fn)

    if near_copy is None:
      return Group(name, generate_rows(lv, pt, np.arange(len(lv), dtype=np.int32)), lv, pt)
    imgs, _, _ = sample.draw_without_near_copies(generate_rows, lv, pt, near_copy,
                                                 max_draws=10 * max(len(lv), 1))
    return Group(name, imgs, lv, pt)


def real_counts(real: Group) -> dict[tuple[str, str], int]:
  """Images per (level, pattern) of the real group: the paper generates as many (Table 1)."""
  return {(l, p): int(real.mask(p, l).sum()) for l, p in real.conditions()}
