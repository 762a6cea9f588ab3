"""Sampling from a chosen epoch.

A sample depends only on (checkpoint, seed, index): its latent vector and its
noise come from `fold_in(PRNGKey(seed), index)`, and BatchNorm uses its running
statistics, so the other images of a batch never change it. The batch size can
change its last bit (XLA may round a program compiled for another batch size
differently), so sampling always runs whole batches of `sample.batch_size`, and
info.json records it.

With `sample.symmetric_flip` a normal or bilateral image (and a unilateral one where
the run flips those in training, augment.flip_unilateral) is flipped left/right where a
coin of its own (from the same (seed, index)) says so: training flips those patterns'
real slices with p = 0.5, so the distribution the generator learns is left/right
symmetric, and the flip makes a sample exactly so instead of keeping the generator's
residual sub-percent tilt (docs/fidelity.md). z and the noise stay those of plain
sampling: an image is either the plain one or its mirror.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spect_fastgan_jax import (augment, checkpoints, conditions, models, outputs, preflight,
                               provenance)
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.errors import ConditionError, ConfigError, RunError, check_field, is_whole

def check_seed(seed, field: str = "sample.seed") -> int:
  """`seed` as an int, or ConfigError naming `field` unless it is a whole number that
  fits the uint32 PRNG seed (0..2**32-1)."""
  ok = isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed <= 0xFFFFFFFF
  check_field(ok, field, seed, "must be a whole number in 0..2**32-1")
  return int(seed)


def check_config(sample_config) -> None:
  """Raises ConfigError naming the first bad field of `config.sample`."""
  check_seed(sample_config.seed)
  v = sample_config.num_per_condition
  check_field(is_whole(v) and (v == -1 or v >= 1), "sample.num_per_condition", v,
              "must be -1 (as many as the real data) or a whole number >= 1")
  v = sample_config.batch_size
  check_field(is_whole(v) and v >= 1, "sample.batch_size", v, "must be a whole number >= 1")
  v = sample_config.get("symmetric_flip", False)
  check_field(isinstance(v, bool), "sample.symmetric_flip", v, "must be True or False")


def symmetric_flip(config) -> bool:
  """A config's `sample.symmetric_flip`; False where the block predates the field."""
  return bool(config.sample.get("symmetric_flip", False))


def generate_fn_of(g: models.Generator, config) -> Callable:
  """make_generate_fn for a run's config: its z size, its `sample.symmetric_flip` (over
  the patterns its training flips, augment.flip_unilateral) and its condition encoding
  (data.condition_side)."""
  check_config(config.sample)
  return make_generate_fn(g, int(config.model.z_dim), symmetric_flip(config),
                          conditions.side_conditioned(config.data),
                          augment.flips_unilateral(config.augment))


# ----------------------------------------------------------------------------
# Images of a checkpoint.
# ----------------------------------------------------------------------------
def sample_keys(seed: int, index: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-sample keys for the latent vector and the noise. index: [N] int -> ([N, 2], [N, 2])."""
  base = jax.random.PRNGKey(seed)
  keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(base, i)))(index)
  return keys[:, 0], keys[:, 1]


# fold_in constant of the symmetric-flip coin (from the latent key, so z stays the same).
_FLIP_STREAM = 0x464C4950


def _flip_coin(z_keys: jax.Array) -> jax.Array:
  """[N] bool: the symmetric flip's coin of each sample, from its latent key."""
  return jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, _FLIP_STREAM)))(z_keys)


def mirrored(config, seed: int, index, pattern) -> np.ndarray:
  """[N] bool: which samples (`seed`, `index` [N]) of patterns `pattern` [N] a run's
  sampling (`config`: sample.symmetric_flip, augment.flip_unilateral) mirrors."""
  pattern = np.asarray(pattern).astype(str)
  if not symmetric_flip(config) or not len(pattern):
    return np.zeros(len(pattern), bool)
  coin = np.asarray(_flip_coin(sample_keys(int(seed), jnp.asarray(index, jnp.int32))[0]))
  return coin & np.isin(pattern, conditions.flip_patterns(augment.flips_unilateral(config.augment)))


def make_generate_fn(g: models.Generator, z_dim: int, symmetric_flip: bool = False,
                     condition_side: bool = False, flip_unilateral: bool = False) -> Callable:
  """Jitted (g_vars, cond [B, C], seed, index [B]) -> images [B, 64, 64] in [0, 1];
  `symmetric_flip`: the module docstring's random flip of normal and bilateral images,
  and of unilateral ones with `flip_unilateral` (`condition_side`: the condition vectors
  split unilateral by side)."""

  @jax.jit
  def generate(g_vars, cond, seed, index):
    z_keys, noise_keys = sample_keys(seed, index)
    z = jax.vmap(lambda k: jax.random.normal(k, (z_dim,)))(z_keys)
    out = augment.from_model_range(g.apply(g_vars, z, cond, noise_keys, train=False), g.output_peak)
    if symmetric_flip:
      flip = _flip_coin(z_keys) & conditions.flip_symmetric(cond, condition_side, flip_unilateral)
      out = jnp.where(flip[:, None, None], out[:, :, ::-1], out)
    return out

  return generate


def generate(g, g_vars, cond: np.ndarray, seed: int, index: np.ndarray, z_dim: int,
             batch_size: int = 256, generate_fn: Callable | None = None) -> np.ndarray:
  """Images for rows of `cond` [N, C] with sample indices `index` [N] -> [N, 64, 64] float32 in [0, 1].

  Batches are padded to `batch_size` so that one compiled program serves every call.
  """
  fn = generate_fn or make_generate_fn(g, z_dim)
  n = cond.shape[0]
  out = np.empty((n, 64, 64), np.float32)
  for s in range(0, n, batch_size):
    e = min(s + batch_size, n)
    pad = batch_size - (e - s)
    c = np.concatenate([cond[s:e], np.repeat(cond[:1], pad, 0)]) if pad else cond[s:e]
    i = np.concatenate([index[s:e], np.zeros(pad, index.dtype)]) if pad else index[s:e]
    out[s:e] = np.asarray(fn(g_vars, jnp.asarray(c), jnp.uint32(seed), jnp.asarray(i)))[: e - s]
  return out


def condition_grid(g, g_vars, config, per_condition: int = 4, seed: int = 0) -> np.ndarray:
  """A [rows * 64, per_condition * 64] image: one row per (level, pattern) of the run."""
  levels = conditions.check_levels(config.data.levels)
  pairs = conditions.all_conditions(levels)
  lv, pt = zip(*[(l, p) for l, p in pairs for _ in range(per_condition)])
  sided = conditions.side_conditioned(config.data)
  cond = conditions.encode(levels, lv, pt, conditions.slot_sides(pt) if sided else None, sided)
  imgs = generate(g, g_vars, cond, seed, np.arange(len(lv), dtype=np.int32), config.model.z_dim,
                  batch_size=len(lv), generate_fn=generate_fn_of(g, config))
  return outputs.tile(imgs, per_condition)


def generator_shapes(g: models.Generator, config) -> dict:
  """Shapes and dtypes of G's variables (no computation): the restore target."""
  c = conditions.condition_dim(config.data.levels, conditions.side_conditioned(config.data))
  k = jax.random.PRNGKey(0)
  return jax.eval_shape(lambda: g.init({"params": k}, jnp.zeros((1, config.model.z_dim)),
                                       jnp.zeros((1, c)), jax.random.split(k, 1), train=False))


def default_counts(run_record: dict | None, levels: Sequence[str]) -> dict[tuple[str, str], int]:
  """Images per condition: the run's training counts if recorded, else the paper's Table 1."""
  counts = (run_record or {}).get("data_counts")
  if counts:
    got = {tuple(k.split("/")): int(v) for k, v in counts.items()}
  else:
    got = dict(conditions.TABLE1_COUNTS)
  return {c: got.get(c, 0) for c in conditions.all_conditions(levels) if got.get(c, 0) > 0}


# A near-copy test: (images [N, 64, 64], level [N], pattern [N]) -> (near [N] bool,
# distance [N] to the nearest training slice); evaluation/memorisation.py builds one.
NearCopyTest = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def draw_without_near_copies(generate_rows: Callable[..., np.ndarray],
                             lv: np.ndarray, pt: np.ndarray, near_copy: NearCopyTest,
                             max_draws: int, side: np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
  """Images for the slots (lv, pt) [N] with no near-copy among them.

  Slot k first gets sample index k; a near-copy is dropped and its slot gets the next
  unused index (N, N+1, ...), until every slot holds an image that passes. So each
  kept image is still the image of its (seed, index). generate_rows(level, pattern,
  index) -> images; with `side` [N] (a side-conditioned run) generate_rows(level,
  pattern, index, side). Raises errors.RunError after `max_draws` draws in all.

  Returns (images [N, 64, 64], index [N], dropped: [{index, level, pattern, distance}]).
  """
  n = len(lv)
  index = np.arange(n, dtype=np.int32)
  extra = (lambda k: ()) if side is None else (lambda k: (side[k],))
  images = generate_rows(lv, pt, index, *extra(slice(None)))
  dropped: list[dict] = []
  todo = np.arange(n)
  next_index = n
  while len(todo):
    near, dist = near_copy(images[todo], lv[todo], pt[todo])
    bad = todo[np.asarray(near, bool)]
    dropped += [{"index": int(index[k]), "level": str(lv[k]), "pattern": str(pt[k]),
                 "distance": float(d)} for k, d in zip(bad, np.asarray(dist)[np.asarray(near, bool)])]
    if len(bad) and next_index + len(bad) > max_draws:
      raise RunError(f"{len(dropped)} of {next_index} images drawn were near-copies of training "
                       f"slices; stopped at {max_draws} draws. The generator replays its training "
                       "data: choose another epoch (--mode=evaluate shows its memorisation audit)")
    index[bad] = np.arange(next_index, next_index + len(bad), dtype=np.int32)
    next_index += len(bad)
    if len(bad):
      images[bad] = generate_rows(lv[bad], pt[bad], index[bad], *extra(bad))
    todo = bad
  return images, index, dropped


@dataclasses.dataclass
class Drawn:
  """Generated images with what reproduces each: sample index (of the seed drawn with)."""
  images: np.ndarray     # [N, 64, 64] in [0, 1]
  level: np.ndarray      # [N] str
  pattern: np.ndarray    # [N] str
  side: np.ndarray       # [N] str: the side drawn with (side-conditioned run), else none
  index: np.ndarray      # [N] int32 sample index
  dropped: list          # near-copies replaced: [{index, level, pattern, distance}]


class RunGenerator:
  """A run's generator, built and compiled once, for any of its saved epochs.

  The one way the product makes images: --mode=sample, --mode=augment, the
  evaluation and api.Sampler all draw through it, so a (checkpoint, seed, index)
  gives the same image whichever asks (at the same batch size).
  """

  def __init__(self, config, workdir: str):
    """`config`: the run's ConfigDict (its config.json); `workdir`: its folder."""
    self.config, self.workdir = config, workdir
    self.levels = conditions.check_levels(config.data.levels)
    self.sided = conditions.side_conditioned(config.data)
    self.network, _ = models.from_config(config.model)
    self._shapes = generator_shapes(self.network, config)
    self._generate_fn = generate_fn_of(self.network, config)

  def restore(self, epoch: int) -> dict:
    """The generator variables of `epoch` (CheckpointError names a missing one)."""
    return checkpoints.restore_sampler(self.workdir, epoch, self._shapes)

  def rows(self, g_vars, level, pattern, index, side, seed: int, batch_size: int) -> np.ndarray:
    """Images [N, 64, 64] for the slots level, pattern, side [N] (side: "none" off
    unilateral and on runs that are not side-conditioned) with sample indices `index` [N]."""
    cond = conditions.encode(self.levels, level, pattern, side, self.sided)
    return generate(self.network, g_vars, cond, seed, np.asarray(index, np.int32),
                    int(self.config.model.z_dim), batch_size=batch_size, generate_fn=self._generate_fn)

  def draw(self, epoch: int, counts: dict[tuple[str, str], int], seed: int, batch_size: int,
           near_copy: NearCopyTest | None = None, side: str | None = None) -> Drawn:
    """counts[(level, pattern)] images per condition from `epoch`, sample indices
    0..N-1 of `seed`. On a side-conditioned run unilateral slots are drawn left and
    right in turn, or all of `side` (conditions.slot_sides). With `near_copy`,
    near-copies are replaced by further indices (draw_without_near_copies)."""
    g_vars = self.restore(epoch)
    lv, pt = conditions.expand_counts(counts)
    sd = conditions.slot_sides(pt, side) if self.sided else np.full(len(pt), "none")
    generate_rows = lambda l, p, i, s: self.rows(g_vars, l, p, i, s, seed, batch_size)
    if near_copy is None:
      index = np.arange(len(lv), dtype=np.int32)
      return Drawn(generate_rows(lv, pt, index, sd), lv, pt, sd, index, [])
    images, index, dropped = draw_without_near_copies(generate_rows, lv, pt, near_copy,
                                                      max_draws=10 * max(len(lv), 1), side=sd)
    return Drawn(images, lv, pt, sd, index, dropped)


_SEED_HINT = ", or choose another seed (--config.sample.seed)"


def check_side(config, side: str | None, workdir: str = "the run") -> str | None:
  """`side` (None, "left" or "right") for sampling the run of `config`; ConditionError
  for an unknown side, or any side on a run that is not side-conditioned
  (data.condition_side), whose generator was never told one."""
  if side is None:
    return None
  if side not in conditions.DEFECT_SIDES:
    raise ConditionError(f"unknown side {side!r}; sides: {', '.join(conditions.DEFECT_SIDES)}")
  if not conditions.side_conditioned(config.data):
    raise ConditionError(f"the run in {workdir} is not side-conditioned (config field data.condition_side "
                         "is False), so its generator cannot be asked for a side; train with "
                         "--config.data.condition_side=True for that")
  return side


def output_dir(workdir: str, epoch: int, seed: int) -> str:
  """Where sample_run writes the images of (epoch, seed)."""
  return os.path.join(workdir, "samples", f"epoch_{epoch:04d}_seed{seed}")


def check_output_dir(out_dir: str, overwrite: bool) -> None:
  """Before any work is spent: OutputExistsError for an earlier output unless
  `overwrite`, PreflightError if the folder cannot be written (a read-only workdir),
  creating nothing."""
  outputs.refuse_existing(out_dir, overwrite, _SEED_HINT)
  preflight.check_can_create(os.path.dirname(out_dir))


def sample_run(config, workdir: str, epoch: int, *, num_per_condition: int | None = None,
               seed: int | None = None, overwrite: bool = False, side: str | None = None,
               near_copy: NearCopyTest | None = None, near_copy_info: dict | None = None,
               log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> str:
  """Generates images from the sampler checkpoint of `epoch` and writes them under
  `<workdir>/samples/epoch_XXXX_seedS/`: samples.npz, one NIfTI stack per
  condition, grid.png and info.json. Returns the output folder.

  On a side-conditioned run (data.condition_side) unilateral images are drawn left and
  right in turn, or all of `side` when given (check_side); samples.npz has each
  image's side and each side its own NIfTI stack.

  With `near_copy`, images it flags are dropped and replaced by further sample
  indices (draw_without_near_copies); info.json records what was dropped, beside
  `near_copy_info` (the rule and its reference).

  An existing output folder is refused unless `overwrite`, and one that cannot be
  written, before any work (check_output_dir); the new outputs are written into a
  temporary folder that replaces the old one only when complete.
  """
  check_config(config.sample)
  side = check_side(config, side, workdir)
  seed = int(config.sample.seed) if seed is None else check_seed(seed)
  out_dir = output_dir(workdir, epoch, seed)
  check_output_dir(out_dir, overwrite)
  levels = conditions.check_levels(config.data.levels)
  run_record = workdir_lib.read_run_record(workdir)
  if num_per_condition is None and config.sample.num_per_condition >= 0:
    num_per_condition = int(config.sample.num_per_condition)
  if num_per_condition is not None and (not is_whole(num_per_condition) or num_per_condition < 1):
    raise ConfigError(f"--num_per_condition must be a whole number >= 1, got {num_per_condition!r}")
  counts = default_counts(run_record, levels)
  if num_per_condition is not None:
    counts = {c: num_per_condition for c in counts}

  total = sum(counts.values())
  log(f"sampling {total} images from epoch {epoch} (seed {seed}): "
      + ", ".join(f"{l} {p} {k}" for (l, p), k in counts.items()))
  # Always this batch size, however few images: XLA may round a program compiled for
  # another batch size differently in the last bit, and the Sampler API (api.py) runs
  # this one, so both give the same image of a (seed, index), bit for bit.
  batch = int(config.sample.batch_size)
  drawn = RunGenerator(config, workdir).draw(epoch, counts, seed, batch, near_copy, side)
  images, lv, pt, sd, index = drawn.images, drawn.level, drawn.pattern, drawn.side, drawn.index
  filter_record = None
  if near_copy is not None:
    filter_record = {**(near_copy_info or {}), "dropped": drawn.dropped,
                     "drawn": int(len(lv) + len(drawn.dropped))}
    log(f"near-copy filter: dropped {len(drawn.dropped)} of {len(lv) + len(drawn.dropped)} images drawn")
  sided = conditions.side_conditioned(config.data)
  cond = conditions.encode(levels, lv, pt, sd, sided)

  with outputs.new_folder(out_dir, overwrite, _SEED_HINT) as tmp:
    # index: each image's sample index; (checkpoint, seed, index) gives back the image.
    np.savez(os.path.join(tmp, "samples.npz"), images=images, level=lv, pattern=pt, side=sd,
             condition=cond, seed=np.int64(seed), index=index, epoch=np.int64(epoch))
    for l, p in counts:
      for s in sorted(set(sd[(lv == l) & (pt == p)].tolist())):
        sel = (lv == l) & (pt == p) & (sd == s)
        outputs.write_nifti(images[sel], os.path.join(tmp, f"{l}_{p}{'' if s == 'none' else '_' + s}.nii.gz"))
    grid_cols = 8
    rows = [outputs.tile(images[(lv == l) & (pt == p)][:grid_cols], grid_cols) for l, p in counts]
    outputs.save_png(np.concatenate(rows, axis=0), os.path.join(tmp, "grid.png"))
    with open(os.path.join(tmp, "info.json"), "w") as f:
      json.dump({"epoch": epoch, "seed": seed, "batch_size": batch,
                 "symmetric_flip": symmetric_flip(config),
                 "flip_unilateral": augment.flips_unilateral(config.augment),
                 "condition_side": sided, "side": side,
                 "workdir": os.path.abspath(workdir),
                 "counts": {f"{l}/{p}": k for (l, p), k in counts.items()},
                 "grid_rows": [f"{l}/{p}" for l, p in counts],
                 "near_copy_filter": filter_record,
                 "config": json.loads(config.to_json()),
                 "provenance": provenance.describe()}, f, indent=2)
  log(f"wrote {out_dir}")
  return out_dir

