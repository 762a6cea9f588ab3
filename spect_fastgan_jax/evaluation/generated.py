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
    (sample.draw_without_near_copies). On a side-conditioned run the unilateral images
    are drawn left and right in turn (conditions.slot_sides) and the group has their sides."""
    drawn = self.draw(epoch, counts, seed, batch_size, near_copy)
    return Group(name, drawn.images, drawn.level, drawn.pattern,
                 drawn.side if conditions.side_conditioned(self.config.data) else None)

  def draw(self, epoch: int, counts: dict[tuple[str, str], int], seed: int, batch_size: int = 256,
           near_copy: sample.NearCopyTest | None = None) -> "Drawn":
    """`images`, with each image's sample index and the near-copies dropped on the way."""
    levels = conditions.check_levels(self.config.data.levels)
    sided = conditions.side_conditioned(self.config.data)
    g_vars = checkpoints.restore_sampler(self.workdir, epoch, self.shapes)
    lv, pt = conditions.expand_counts(counts)
    sd = conditions.slot_sides(pt) if sided else np.full(len(pt), "none")

    def generate_rows(l, p, index, s=None):
      # A fixed batch size keeps one compiled program for every epoch and count.
      return sample.generate(self.generator, g_vars, conditions.encode(levels, l, p, s, sided), seed, index,
                             int(self.config.model.z_dim), batch_size=batch_size,
                             generate_fn=self.generate_fn)

    if near_copy is None:
      index = np.arange(len(lv), dtype=np.int32)
      return Drawn(generate_rows(lv, pt, index, sd), lv, pt, sd, index, [])
    imgs, index, dropped = sample.draw_without_near_copies(generate_rows, lv, pt, near_copy,
                                                           max_draws=10 * max(len(lv), 1), side=sd)
    return Drawn(imgs, lv, pt, sd, index, dropped)


@dataclasses.dataclass
class Drawn:
  """Generated images with what reproduces each: sample index (of the seed drawn with)."""
  images: np.ndarray     # [N, 64, 64] in [0, 1]
  level: np.ndarray      # [N] str
  pattern: np.ndarray    # [N] str
  side: np.ndarray       # [N] str: the side drawn with (side-conditioned run), else none
  index: np.ndarray      # [N] int32 sample index
  dropped: list          # near-copies replaced: [{index, level, pattern, distance}]


def real_counts(real: Group) -> dict[tuple[str, str], int]:
  """Images per (level, pattern) of the real group: the paper generates as many (Table 1)."""
  return {(l, p): int(real.mask(p, l).sum()) for l, p in real.conditions()}
