"""A small condition classifier, trained on real slices: it predicts a slice's level,
pattern and, for unilateral slices, the defect's side.

It serves three purposes (docs/evaluation.md): scoring whether generated images
show the condition they were asked for, giving features for Frechet and kernel
distances without downloaded weights, and the train-on-synthetic experiments.
Training splits by subject, so no subject's slices are on both sides, and the
trained weights are cached per (data set, classifier config, split).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable, Sequence

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from spect_fastgan_jax import augment, conditions, provenance
from spect_fastgan_jax.data import dataset
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.outputs import atomic_write
from spect_fastgan_jax.evaluation.metrics import normalise
from spect_fastgan_jax.errors import ConfigError

CACHE_VERSION = 1
SIDE_CLASSES = ("left", "right")
UNKNOWN = -1   # label of a head that has no target for a sample (side of a non-unilateral slice)


class ConditionClassifier(nn.Module):
  """images [B, 64, 64] max-normalised -> (features [B, F], logits per head).

  The features are flattened rather than globally pooled: the side of a
  defect is a position, which global pooling would throw away.
  """
  widths: Sequence[int] = (16, 32, 64)
  features: int = 64

  @nn.compact
  def __call__(self, x):
    h = x[..., None]
    for w in self.widths:
      h = nn.relu(nn.Conv(int(w), (3, 3))(h))
      h = nn.avg_pool(h, (2, 2), (2, 2))
    f = nn.relu(nn.Dense(int(self.features))(h.reshape(h.shape[0], -1)))
    return f, {"level": nn.Dense(len(conditions.LEVELS))(f),
               "pattern": nn.Dense(len(conditions.PATTERNS))(f),
               "side": nn.Dense(len(SIDE_CLASSES))(f)}


@dataclasses.dataclass
class Labelled:
  """Training or test images with integer labels (UNKNOWN where a head has no target).

  images: [N, K, 64, 64] counts or [0, 1]; K alternative slices of one sample
  (the real slice and its neighbours), one drawn per training step.
  """
  images: np.ndarray
  level: np.ndarray
  pattern: np.ndarray
  side: np.ndarray
  synthetic: np.ndarray | None = None   # [N] bool: generated, not real (None: all real)

  @staticmethod
  def from_strings(images, level, pattern, side=None, synthetic: bool = False) -> "Labelled":
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
      images = images[:, None]
    pattern = np.asarray(pattern).astype(str)
    side = np.full(len(pattern), "none") if side is None else np.asarray(side).astype(str)
    lut = {s: i for i, s in enumerate(SIDE_CLASSES)}
    return Labelled(images, _index(level, conditions.LEVELS), _index(pattern, conditions.PATTERNS),
                    np.array([lut.get(s, UNKNOWN) if p == "unilateral" else UNKNOWN
                              for s, p in zip(side, pattern)], np.int32),
                    np.full(len(pattern), bool(synthetic)))

  @staticmethod
  def concat(parts: Sequence["Labelled"]) -> "Labelled":
    k = max(p.images.shape[1] for p in parts)
    # Samples with fewer alternatives repeat their own slice, so the draw stays uniform.
    imgs = [np.concatenate([p.images] * (k // p.images.shape[1]), axis=1) for p in parts]
    synthetic = np.concatenate([np.zeros(len(p.level), bool) if p.synthetic is None else p.synthetic
                                for p in parts])
    return Labelled(np.concatenate(imgs), *(np.concatenate([getattr(p, f) for p in parts])
                                            for f in ("level", "pattern", "side")), synthetic)


def _index(labels, names) -> np.ndarray:
  lut = {n: i for i, n in enumerate(names)}
  return np.array([lut[str(l)] for l in labels], np.int32)


def real_labelled(ds: SliceDataset) -> Labelled:
  """All three slices of each real sample as alternatives (the neighbours show the
  same condition a few mm away: free augmentation)."""
  return Labelled.from_strings(ds.slices, ds.level, ds.pattern, ds.side)


def subject_split(ds: SliceDataset, holdout_fraction: float, seed: int) -> np.ndarray:
  """[N] bool, True for slices of the classifier's held-out subjects (drawn per
  pattern: data.dataset.subject_split)."""
  if not 0 < holdout_fraction < 1:
    raise ConfigError(f"config field evaluate.classifier.holdout_fraction must be in (0, 1), "
                     f"got {holdout_fraction}")
  return dataset.subject_split(ds, holdout_fraction, seed)


@dataclasses.dataclass
class Trained:
  """A trained classifier: its module, parameters and a jitted feature/probability function."""
  module: ConditionClassifier
  params: dict

  def predict(self, images: np.ndarray, batch: int = 512) -> dict[str, np.ndarray]:
    """images: [N, 64, 64] (any scale; each is max-normalised here) ->
    {"features": [N, F], "level"/"pattern"/"side": [N, classes] probabilities}."""
    fn = _predict_fn(self.module)
    outs = [fn(self.params, jnp.asarray(normalise(images[s:s + batch])))
            for s in range(0, len(images), batch)]
    return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in outs[0]}


_PREDICT_FNS: dict = {}


def _predict_fn(module):
  if module not in _PREDICT_FNS:
    def fn(params, x):
      f, logits = module.apply({"params": params}, x)
      return {"features": f, **{k: jax.nn.softmax(v) for k, v in logits.items()}}
    _PREDICT_FNS[module] = jax.jit(fn)
  return _PREDICT_FNS[module]


def _masked_ce(logits, labels):
  mask = labels != UNKNOWN
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1)


def train(data: Labelled, cfg, log: Callable[[str], None] = lambda m: None,
          seed: int | None = None, balance: bool = True, classic: bool = False,
          synthetic_share: float = 0.0) -> Trained:
  """Trains from scratch on `data` with Adam.

  cfg: the `evaluate.classifier` config block. seed: initialisation, batches and
  shifts (default cfg.seed); the subject split is not made here.
  balance: draw batches with weights that balance the (level, pattern) conditions, so
    rare ones (bilateral) are not ignored; False draws every sample equally often.
  synthetic_share: with `balance`, the share of each condition's draws that come from
    its synthetic samples (`data.synthetic`), where it has real and synthetic ones; 0
    draws a condition's samples equally often, whichever kind.
  classic: the classic augmentation of SPECT slices (see CONTRAST_LOG): the paper's
    Eq. 6 blend in place of the draw of one of a sample's three slices, left-right flip
    of normal and bilateral slices, contrast, and the shift.
  """
  seed = int(cfg.seed) if seed is None else int(seed)
  module = ConditionClassifier(tuple(int(w) for w in cfg.widths), int(cfg.features))
  key = jax.random.PRNGKey(seed)
  params = module.init(key, jnp.zeros((1, 64, 64)))["params"]
  opt_state = optax.adam(float(cfg.learning_rate)).init(params)

  n, k = data.images.shape[:2]
  flat = normalise(data.images.reshape(n * k, 64, 64)).reshape(n, k, 64, 64)
  images = jnp.asarray(flat)
  labels = {h: jnp.asarray(getattr(data, h)) for h in ("level", "pattern", "side")}
  steps, bs = int(cfg.steps), int(cfg.batch_size)
  index = batch_index(data, steps, bs, seed, balance, synthetic_share)

  step = _train_step(module, float(cfg.learning_rate), bs, int(k), int(cfg.max_shift), bool(classic))
  losses = []
  for s, skey in enumerate(jax.random.split(jax.random.fold_in(key, 1), steps)):
    params, opt_state, loss = step(params, opt_state, images, labels, index[s], skey)
    losses.append(loss)
  losses = np.asarray(losses)
  log(f"classifier: {steps} steps, loss {losses[:10].mean():.3f} -> {losses[-10:].mean():.3f}")
  return Trained(module, params)


def batch_index(data: Labelled, steps: int, batch_size: int, seed: int, balance: bool,
                synthetic_share: float = 0.0) -> np.ndarray:
  """[steps, batch_size] sample indices: with `balance` each (level, pattern) condition
  is drawn equally often, else each sample is. With `balance` and a `synthetic_share` s
  > 0, a condition that has real and synthetic samples draws its synthetic ones s of the
  time and its real ones 1 - s, each kind's samples equally often."""
  cond = data.level * len(conditions.PATTERNS) + data.pattern
  weight = 1.0 / np.bincount(cond)[cond] if balance else np.ones(len(cond))
  if balance and synthetic_share > 0 and data.synthetic is not None:
    synth = data.synthetic.astype(bool)
    kind = cond * 2 + synth
    per_kind = np.bincount(kind, minlength=2 * (cond.max() + 1))
    mixed = (per_kind[cond * 2] > 0) & (per_kind[cond * 2 + 1] > 0)
    share = np.where(synth, synthetic_share, 1.0 - synthetic_share)
    weight = np.where(mixed, share / per_kind[kind], weight)
  rng = np.random.default_rng(seed)
  return rng.choice(len(cond), (steps, batch_size), p=weight / weight.sum()).astype(np.int32)


# The classic augmentation a user would try before a GAN (`train(classic=True)`): the
# paper's Eq. 6 blend w x slice + (1 - w) x a neighbour with w uniform in [0, 1], every
# sample, re-normalised (it spans from the slice to its neighbour, where the plain draw
# takes one of the three); left-right flip of normal and bilateral slices (a unilateral
# defect would change side); a contrast change x ** gamma with log gamma uniform in
# +/- CONTRAST_LOG (cameras and reconstructions differ in contrast); and the shift every
# classifier gets.
CONTRAST_LOG = 0.2
_FLIP_PATTERNS = np.array([p in conditions.FLIP_SYMMETRIC for p in conditions.PATTERNS])


_TRAIN_STEPS: dict = {}


def _train_step(module, learning_rate: float, bs: int, k: int, max_shift: int, classic: bool = False):
  """The jitted Adam step, one per (module, settings), so that the repeated classifiers
  of the utility study reuse one compiled program per data-set size.

  A Python loop over one jitted step: on XLA's CPU backend the convolutions of a
  lax.scan body ran about 20x slower than the same step compiled on its own.
  The data are arguments, not closure constants, so XLA does not fold them into
  the program (slow compiles, one program per data set)."""
  key = (module, learning_rate, bs, k, max_shift, classic)
  if key in _TRAIN_STEPS:
    return _TRAIN_STEPS[key]
  opt = optax.adam(learning_rate)
  flip_patterns = jnp.asarray(_FLIP_PATTERNS)

  @jax.jit
  def step(params, opt_state, images, labels, idx, skey):
    k1, k2, k3 = jax.random.split(skey, 3)
    if classic:
      # Samples with one alternative (generated slices) are their own neighbours: no blend.
      three = images[idx] if k == 3 else jnp.repeat(images[idx][:, :1], 3, axis=1)
      x = augment.augment(k1, three, flip_patterns[labels["pattern"][idx]], blend=True,
                          max_shift=max_shift, flip=True, renormalise=True, blend_prob=1.0)
      gamma = jnp.exp(jax.random.uniform(k3, (bs, 1, 1), minval=-CONTRAST_LOG, maxval=CONTRAST_LOG))
      x = jnp.clip(x, 0.0, 1.0) ** gamma
    else:
      alt = jax.random.randint(k1, (bs,), 0, k)
      x = images[idx, alt]
      shift = jax.random.randint(k2, (bs,), -max_shift, max_shift + 1)
      x = augment.shift_rows(x, shift)

    def loss_fn(p):
      _, logits = module.apply({"params": p}, x)
      return sum(_masked_ce(logits[h], labels[h][idx]) for h in labels)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  _TRAIN_STEPS[key] = step
  return step


def accuracy(trained: Trained, images: np.ndarray, level, pattern, side=None,
             levels: Sequence[str] = conditions.LEVELS) -> dict:
  """How often images [N, 64, 64] are classified as their (level, pattern), per
  condition and overall; the level counts only if the run has more than one.

  Returns {"overall", "pattern", "level", "per_condition": {"BG/normal": acc}, "side" (unilateral
  with known side), "n"}; missing parts are None.
  """
  pred = trained.predict(images)
  return score(pred, level, pattern, side, levels)


def score(pred: dict, level, pattern, side=None, levels: Sequence[str] = conditions.LEVELS) -> dict:
  """accuracy() from precomputed predictions."""
  lab = Labelled.from_strings(np.zeros((len(pattern), 1, 1, 1)), level, pattern, side)
  pl, pp = pred["level"].argmax(1), pred["pattern"].argmax(1)
  level_ok = pl == lab.level
  ok = (pp == lab.pattern) & (level_ok if len(levels) > 1 else True)
  per = {}
  for l, p in conditions.all_conditions(levels):
    m = (np.asarray(level) == l) & (np.asarray(pattern) == p)
    if m.any():
      per[f"{l}/{p}"] = float(ok[m].mean())
  known = lab.side != UNKNOWN
  return {"n": int(len(pattern)), "overall": float(ok.mean()), "pattern": float((pp == lab.pattern).mean()),
          "level": float(level_ok.mean()) if len(levels) > 1 else None, "per_condition": per,
          "side": float((pred["side"].argmax(1)[known] == lab.side[known]).mean()) if known.any() else None}


# --- The cached classifier of a data set --------------------------------------

def cache_dir(workdir: str) -> str:
  """Where a run's classifiers are cached: <workdir>/evaluation/classifiers."""
  return os.path.join(workdir, "evaluation", "classifiers")


def cache_key(ds: SliceDataset, cfg, holdout: np.ndarray | None = None) -> str:
  """Hash of the real data (slices and labels), the classifier config, CACHE_VERSION and,
  when given, the held-out rows (a split not drawn by the config)."""
  h = hashlib.sha256()
  for arr in (ds.slices, ds.level, ds.pattern, ds.side, ds.subject):
    h.update(np.ascontiguousarray(arr).tobytes())
  if holdout is not None:
    h.update(b"holdout" + np.packbits(holdout).tobytes())
  h.update(json.dumps(cfg.to_dict(), sort_keys=True, default=list).encode())
  h.update(str(CACHE_VERSION).encode())
  return h.hexdigest()[:16]


@dataclasses.dataclass
class Reference:
  """The classifier of one real data set, its split and its held-out accuracy."""
  trained: Trained
  holdout: np.ndarray       # [N] bool over the data set's slices
  holdout_accuracy: dict
  key: str
  trained_with: dict | None = None   # provenance.describe() where it was trained (None: older cache)


def reference(ds: SliceDataset, cfg, cache_dir: str,
              log: Callable[[str], None] = lambda m: None,
              holdout: np.ndarray | None = None) -> Reference:
  """The data set's classifier: loaded from `cache_dir` if this (data set, config, split)
  was trained before, else trained on the training subjects and cached there.

  holdout: [N] bool, the rows to test on (a run's held-out subjects); default the
  config's own subject_split."""
  key = cache_key(ds, cfg, holdout)
  if holdout is None:
    holdout = subject_split(ds, float(cfg.holdout_fraction), int(cfg.seed))
  module = ConditionClassifier(tuple(int(w) for w in cfg.widths), int(cfg.features))
  path = os.path.join(cache_dir, f"classifier-{key}.msgpack")
  levels = tuple(l for l in conditions.LEVELS if l in set(ds.level))
  if os.path.exists(path):
    with open(path, "rb") as f:
      blob = flax.serialization.msgpack_restore(f.read())
    trained = Trained(module, blob["params"])
    log(f"loaded the condition classifier from {path}")
    info = json.loads(blob["info"])
    return Reference(trained, holdout, info["holdout_accuracy"], key, info.get("trained_with"))
  log(f"training the condition classifier on {int((~holdout).sum())} real slices "
      f"({len(np.unique(ds.subject[~holdout]))} subjects; {int(holdout.sum())} held out)")
  trained = train(real_labelled(ds.subset(~holdout)), cfg, log)
  test = ds.subset(holdout)
  acc = accuracy(trained, test.slices[:, 1], test.level, test.pattern, test.side, levels)
  trained_with = provenance.describe()
  info = json.dumps({"holdout_accuracy": acc, "config": cfg.to_dict(), "trained_with": trained_with},
                    default=list)
  blob = flax.serialization.msgpack_serialize(
      {"params": jax.tree_util.tree_map(np.asarray, trained.params), "info": info})
  atomic_write(path, lambda f: f.write(blob), suffix=".msgpack")
  log(f"cached the classifier as {path}; held-out real accuracy {acc['overall']:.3f}")
  return Reference(trained, holdout, acc, key, trained_with)
