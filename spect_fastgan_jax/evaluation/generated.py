"""Generated images of a run's epoch as the evaluation groups them, as many per
condition as the real data has. Drawn through sample.RunGenerator, the product's
one sampling path."""

from __future__ import annotations

from spect_fastgan_jax import conditions, sample
from spect_fastgan_jax.evaluation.score import Group


def images(gen: sample.RunGenerator, epoch: int, counts: dict[tuple[str, str], int], seed: int,
           name: str, batch_size: int = 256, near_copy: sample.NearCopyTest | None = None) -> Group:
  """Group of counts[(level, pattern)] images per condition from the sampler
  checkpoint of `epoch`; sample indices 0..N-1 of `seed` (reproducible). With
  `near_copy`, near-copies are replaced by further indices as --mode=sample does
  (sample.draw_without_near_copies). On a side-conditioned run the unilateral images
  are drawn left and right in turn (conditions.slot_sides) and the group has their sides."""
  drawn = gen.draw(epoch, counts, seed, batch_size, near_copy)
  return Group(name, drawn.images, drawn.level, drawn.pattern,
               drawn.side if conditions.side_conditioned(gen.config.data) else None,
               mirrored=sample.mirrored(gen.config, seed, drawn.index, drawn.pattern))


def real_counts(real: Group) -> dict[tuple[str, str], int]:
  """Images per (level, pattern) of the real group: the paper generates as many (Table 1)."""
  return {(l, p): int(real.mask(p, l).sum()) for l, p in real.conditions()}
