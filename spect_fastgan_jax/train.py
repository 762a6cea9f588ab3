"""Training: one jitted step updates both networks; an epoch runs on device-resident data.

The paper's steps (i)-(vi) are one `train_step`: G makes a batch, D sees the
augmented real batch (with both self-supervision decoders) and the fake batch,
and both Adam states are updated from gradients of the current parameters.
An epoch draws a fresh permutation on device and runs its steps either as one
compiled `lax.scan` (GPU/TPU: no host round trip per step) or as a host loop over
the jitted step (CPU, where XLA runs loop bodies far slower; see
`resolve_train_loop`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from spect_fastgan_jax import augment as augment_lib
from spect_fastgan_jax import checkpoints, conditions, losses, models, provenance, runlog
from spect_fastgan_jax.data import dataset as dataset_lib

Array = jax.Array
PyTree = Any

METRICS = ("d_real", "d_fake", "recon", "g")
# Fields that must match between a run and its resumption: they change the
# computation, so mixing them would make the result neither run's.
_RESUME_FIELDS = ("seed", "batch_size", "data", "model", "loss", "optim", "augment")
# Fields that change where or how fast data is read or convolutions are run,
# never what is read or computed (model.conv_impl: the same function to float32
# rounding), so a run may resume with other values.
_RESUME_FREE_FIELDS = ("data.cache_dir", "data.read_workers", "model.conv_impl")


@flax.struct.dataclass
class TrainState:
  """Everything needed to resume, as one pytree (checkpointed as a whole)."""
  step: Array          # int32, steps taken
  epoch: Array         # int32, full epochs completed
  key: Array           # uint32 [2], the run's base key (raw key data serialises)
  g_params: PyTree
  g_stats: PyTree      # G's BatchNorm running statistics and spectral-norm vectors
  d_params: PyTree
  d_stats: PyTree
  g_opt: PyTree
  d_opt: PyTree
  ema_params: PyTree   # EMA of G's weights; {} when config.optim.ema_decay == 0


@flax.struct.dataclass
class DeviceData:
  """The training set on device."""
  slices: Array    # [N, 3, 64, 64] float32, each slice max-normalised to [0, 1]
  cond: Array      # [N, C] float32 one-hot condition
  flip_ok: Array   # [N] bool, normal and bilateral slices
  spread: Array    # [N] float32, mean |x_i - x_j| of random pairs of real slices of the
                   # slice's condition, networks' range: the mode-seeking term's yardstick


class TrainError(RuntimeError):
  """A run that cannot go on (bad config, non-finite loss); the message says why."""


# ----------------------------------------------------------------------------
# Config checks.
# ----------------------------------------------------------------------------
def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field."""
  def need(ok, field, value, what):
    if not ok:
      raise ValueError(f"config field {field} {what}, got {value!r}")
  def whole(v):  # True/False are ints in Python, never a sensible count here
    return isinstance(v, int) and not isinstance(v, bool)
  need(whole(config.batch_size) and config.batch_size >= 1, "batch_size",
       config.batch_size, "must be a whole number >= 1")
  need(whole(config.num_epochs) and config.num_epochs >= 1, "num_epochs",
       config.num_epochs, "must be a whole number >= 1")
  need(whole(config.model.z_dim) and config.model.z_dim >= 1, "model.z_dim",
       config.model.z_dim, "must be >= 1")
  need(whole(config.model.embed_dim) and config.model.embed_dim >= 1, "model.embed_dim",
       config.model.embed_dim, "must be >= 1")
  need(whole(config.model.d_out_channels) and config.model.d_out_channels >= 1, "model.d_out_channels",
       config.model.d_out_channels, "must be a whole number >= 1")
  for f in ("lr_g", "lr_d"):
    v = config.optim[f]
    need(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f"optim.{f}", v,
         "must be a positive number")
  for f in ("b1", "b2"):
    v = config.optim[f]
    need(isinstance(v, (int, float)) and 0 <= v < 1, f"optim.{f}", v, "must be in [0, 1)")
  v = config.optim.ema_decay
  need(isinstance(v, (int, float)) and 0 <= v < 1, "optim.ema_decay", v, "must be in [0, 1)")
  need(isinstance(config.optim.ema_warmup, bool), "optim.ema_warmup", config.optim.ema_warmup,
       "must be True or False")
  for f in ("max_shift", "diff_shift"):
    v = config.augment[f]
    need(whole(v) and 0 <= v < 32, f"augment.{f}", v, "must be a whole number in 0..31")
  v = config.augment.blend_prob
  need(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1, "augment.blend_prob", v,
       "must be a number in (0, 1] (augment.blend=False turns blending off)")
  for f, hi in (("diff_cutout", 1.0), ("diff_intensity", 1.0)):
    v = config.augment[f]
    need(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < hi,
         f"augment.{f}", v, f"must be a number in [0, {hi})")
  v = config.loss.mode_seeking
  need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
       "loss.mode_seeking", v, "must be a number >= 0")
  v = config.loss.mode_seeking_target
  need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
       "loss.mode_seeking_target", v, "must be a number > 0")
  for f in ("noise_full_res", "d_coords"):
    need(isinstance(config.model[f], bool), f"model.{f}", config.model[f], "must be True or False")
  need(isinstance(config.augment.renormalise, bool), "augment.renormalise", config.augment.renormalise,
       "must be True or False")
  need(config.loss.recon_distance in ("l1", "l2"), "loss.recon_distance",
       config.loss.recon_distance, "must be 'l1' or 'l2'")
  for f in ("sample_every_epochs", "monitor_every_epochs"):
    need(whole(config.log[f]) and config.log[f] >= 0, f"log.{f}", config.log[f], "must be >= 0")
  need(whole(config.log.monitor_per_condition) and config.log.monitor_per_condition >= 2,
       "log.monitor_per_condition", config.log.monitor_per_condition, "must be a whole number >= 2")
  need(isinstance(config.checkpoint.sampler_every_epochs, int)
       and config.checkpoint.sampler_every_epochs >= 1,
       "checkpoint.sampler_every_epochs", config.checkpoint.sampler_every_epochs, "must be >= 1")
  need(isinstance(config.checkpoint.keep_train_states, int) and config.checkpoint.keep_train_states >= 1,
       "checkpoint.keep_train_states", config.checkpoint.keep_train_states, "must be >= 1")
  resolve_train_loop(config.get("train_loop", "auto"))
  need(whole(config.num_seeds) and config.num_seeds >= 1, "num_seeds", config.num_seeds,
       "must be a whole number >= 1")
  need(isinstance(config.num_devices, int) and (config.num_devices == -1 or config.num_devices >= 1),
       "num_devices", config.num_devices, "must be -1 (all devices that fit) or >= 1")
  conditions.check_levels(config.data.levels)
  models.from_config(config.model, conditions.condition_dim(config.data.levels))


# ----------------------------------------------------------------------------
# State.
# ----------------------------------------------------------------------------
def make_optimizers(config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  o = config.optim
  return (optax.adam(o.lr_g, b1=o.b1, b2=o.b2), optax.adam(o.lr_d, b1=o.b1, b2=o.b2))


def init_variables(config, g: models.Generator, d: models.Discriminator, key: Array):
  """Initial variables of G and D."""
  c = conditions.condition_dim(config.data.levels)
  k_g, k_d = jax.random.split(key)
  z = jnp.zeros((1, config.model.z_dim), jnp.float32)
  y = jnp.zeros((1, c), jnp.float32)
  g_vars = g.init({"params": k_g}, z, y, jax.random.split(k_g, 1), train=False)
  d_vars = d.init({"params": k_d}, jnp.zeros((1, 64, 64, 1)), y, train=False,
                  crop_offsets=jnp.zeros((1, 2), jnp.int32))
  return g_vars, d_vars


def create_train_state(config, g, d) -> TrainState:
  """The state at step 0, from `config.seed`."""
  key = jax.random.PRNGKey(config.seed)
  g_vars, d_vars = init_variables(config, g, d, jax.random.fold_in(key, 1))
  tx_g, tx_d = make_optimizers(config)
  return TrainState(
      step=jnp.zeros((), jnp.int32), epoch=jnp.zeros((), jnp.int32), key=key,
      g_params=g_vars["params"], g_stats=g_vars["batch_stats"],
      d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
      g_opt=tx_g.init(g_vars["params"]), d_opt=tx_d.init(d_vars["params"]),
      # A copy, not the same arrays: the step donates the state, and one buffer
      # cannot be donated twice.
      ema_params=(jax.tree_util.tree_map(jnp.copy, g_vars["params"])
                  if config.optim.ema_decay > 0 else {}))


# ----------------------------------------------------------------------------
# The step and the epoch.
# ----------------------------------------------------------------------------
def make_train_step(config, g: models.Generator, d: models.Discriminator) -> Callable:
  """Returns train_step(state, real3, cond, flip_ok, spread, key) -> (state, metrics).

  real3: [B, 3, 64, 64] max-normalised real slices (below, centre, above);
  cond: [B, C]; flip_ok: [B] bool; spread: [B] the real pair distance of each
  slice's condition (DeviceData.spread); key: the step's PRNG key.
  """
  tx_g, tx_d = make_optimizers(config)
  aug = config.augment
  z_dim = config.model.z_dim
  recon_kind = config.loss.recon_distance
  ema_decay = float(config.optim.ema_decay)
  ema_warmup = bool(config.optim.ema_warmup)
  ms_weight = float(config.loss.mode_seeking)
  ms_target = float(config.loss.mode_seeking_target)
  diff = dict(max_shift=int(aug.diff_shift), cutout=float(aug.diff_cutout),
              intensity=float(aug.diff_intensity))
  use_diff = any(diff.values())

  # DeviceData.spread is in the paper's range [-1, 1]; the networks' range spans
  # 1 + output_peak, and the pairs are compared there.
  spread_scale = (1.0 + g.output_peak) / 2.0

  def train_step(state: TrainState, real3, cond, flip_ok, spread, key):
    b = real3.shape[0]
    k_aug, k_z, k_noise, k_crop, k_diff = jax.random.split(key, 5)
    x = augment_lib.to_model_range(augment_lib.augment(
        k_aug, real3, flip_ok, blend=aug.blend, max_shift=aug.max_shift, flip=aug.flip,
        renormalise=bool(aug.renormalise), blend_prob=float(aug.blend_prob)), g.output_peak)
    k_diff_real, k_diff_fake = jax.random.split(k_diff)
    if use_diff:
      x = augment_lib.diff_augment(k_diff_real, x, **diff)
    # With the mode-seeking term G makes a second image of each condition from
    # another z (the pair's partner); D sees only the first B.
    pairs = 2 if ms_weight > 0 else 1
    z = jax.random.normal(k_z, (pairs * b, z_dim))
    g_cond = jnp.concatenate([cond] * pairs)
    noise_keys = jax.random.split(k_noise, pairs * b)
    offsets = jax.random.randint(k_crop, (b, 2), 0, 9)

    # (i) G makes the fake batch; its vjp is kept to send L_G's gradient back.
    def g_forward(g_params):
      fake, upd = g.apply({"params": g_params, "batch_stats": state.g_stats}, z, g_cond,
                          noise_keys, train=True, mutable=["batch_stats"])
      return fake, upd["batch_stats"]
    fake_all, g_vjp, g_stats = jax.vjp(g_forward, state.g_params, has_aux=True)
    fake = fake_all[:b]

    # (ii)-(v) D on the real batch (with decoders) and on the fake batch; one
    # pass over the fake batch serves both L_fake and L_G.
    def d_losses(d_params, fake):
      (real_logits, rec_full, rec_crop), upd = d.apply(
          {"params": d_params, "batch_stats": state.d_stats}, x, cond, train=True,
          crop_offsets=offsets, mutable=["batch_stats"])
      if use_diff:
        fake = augment_lib.diff_augment(k_diff_fake, fake, **diff)
      fake_logits, upd = d.apply(
          {"params": d_params, "batch_stats": upd["batch_stats"]}, fake, cond, train=True,
          mutable=["batch_stats"])
      l_real = losses.real_loss(real_logits)
      l_fake = losses.fake_loss(fake_logits)
      l_rec = losses.recon_loss(rec_crop, models.crop_target(x, offsets), rec_full, x, recon_kind)
      l_g = losses.generator_loss(fake_logits)
      metrics = {"d_real": l_real, "d_fake": l_fake, "recon": l_rec, "g": l_g}
      return (l_real + l_fake + l_rec, l_g), (upd["batch_stats"], metrics)

    (_, _), d_vjp, (d_stats, metrics) = jax.vjp(d_losses, state.d_params, fake, has_aux=True)
    one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
    d_grads, _ = d_vjp((one, zero))          # dL_D / dD
    _, fake_grad = d_vjp((zero, one))        # dL_G / dfake
    if ms_weight > 0:
      (l_ms, ratio), ms_grad = jax.value_and_grad(
          lambda f: losses.mode_seeking_loss(f[:b], f[b:], spread * spread_scale, ms_target),
          has_aux=True)(fake_all)
      fake_grad = jnp.concatenate([fake_grad, jnp.zeros_like(fake_grad)]) + ms_weight * ms_grad
      metrics = {**metrics, "mode_seeking": l_ms, "pair_spread": ratio}
    (g_grads,) = g_vjp(fake_grad)            # dL_G / dG

    # (vi) both Adam updates at once.
    g_upd, g_opt = tx_g.update(g_grads, state.g_opt, state.g_params)
    d_upd, d_opt = tx_d.update(d_grads, state.d_opt, state.d_params)
    g_params = optax.apply_updates(state.g_params, g_upd)
    d_params = optax.apply_updates(state.d_params, d_upd)
    ema = state.ema_params
    if ema_decay > 0:
      # With warm-up the decay grows as (1 + t) / (10 + t) up to ema_decay, so the
      # average forgets the random initial weights within the first epochs.
      t = state.step.astype(jnp.float32)
      decay = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t)) if ema_warmup else ema_decay
      ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, g_params)
    new_state = state.replace(step=state.step + 1, g_params=g_params, g_stats=g_stats,
                              d_params=d_params, d_stats=d_stats, g_opt=g_opt, d_opt=d_opt,
                              ema_params=ema)
    return new_state, metrics

  return train_step


def steps_per_epoch(num_slices: int, batch_size: int) -> int:
  """Full batches per epoch (the last partial batch of each permutation is dropped)."""
  return num_slices // batch_size


def resolve_train_loop(kind: str, backend: str | None = None) -> str:
  """'scan' or 'steps' for config field `train_loop` ('auto' picks by backend).

  On GPU/TPU an epoch is one compiled `lax.scan`: no host round trip per step.
  XLA:CPU runs the convolutions of a loop body far slower than the same ops in
  a plain jitted step (about 15-25x, benchmarks/train_speed.py --train_loop), so
  on CPU the epoch is a host loop over one jitted, donated step; data, keys and
  the permutation still live on the device.
  """
  if kind not in ("auto", "scan", "steps"):
    raise ValueError(f"config field train_loop must be 'auto', 'scan' or 'steps', got {kind!r}")
  if kind == "auto":
    return "steps" if (backend or jax.default_backend()) == "cpu" else "scan"
  return kind


def make_mesh(num_devices: int, batch_size: int, log: Callable[[str], None] = lambda m: None):
  """A 1-D device mesh with axis 'data' over which each batch is split.

  num_devices: config field `num_devices`; -1 takes the most visible devices
  that divide the batch (and says so if that is fewer than are visible). In a
  job of several processes (docs/multihost.md) the mesh spans every device of
  every process, so the batch must split evenly over all of them.
  """
  devices = jax.devices()
  if jax.process_count() > 1:
    if num_devices not in (-1, len(devices)) or batch_size % len(devices):
      raise ValueError(
          f"config field batch_size ({batch_size}) must split evenly over all {len(devices)} devices of "
          f"the {jax.process_count()} processes ({jax.local_device_count()} in this one)"
          + (f", and num_devices ({num_devices}) must be -1 or {len(devices)}" if num_devices != -1 else ""))
    return jax.sharding.Mesh(np.array(devices), ("data",))
  if num_devices == -1:
    n = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
    if n < len(devices):
      log(f"using {n} of {len(devices)} devices: batch_size {batch_size} splits evenly over {n}")
  else:
    n = num_devices
    if not isinstance(n, int) or n < 1:
      raise ValueError(f"config field num_devices must be -1 (all that fit) or >= 1, got {num_devices!r}")
    if n > len(devices):
      raise ValueError(f"config field num_devices is {n} but only {len(devices)} device(s) are visible")
    if batch_size % n:
      raise ValueError(f"config field batch_size ({batch_size}) must split evenly over "
                       f"num_devices ({n}) devices")
  return jax.sharding.Mesh(np.array(devices[:n]), ("data",))


def replicate(tree, mesh):
  """Puts every array of `tree` whole on every device of `mesh`.

  Across processes each process puts its own copy on its own devices: every
  process holds the same values (the same data, seed and checkpoint).
  """
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda i, x=np.asarray(x): x[i]),
      tree)


def make_train_epoch(config, g, d, num_slices: int, train_loop: str | None = None,
                     mesh=None, num_seeds: int = 1) -> Callable:
  """Returns train_epoch(state, data) -> (state, metrics [steps]) that donates `state`.

  Both loop kinds draw the same batches and keys, so they train the same run.
  With a `mesh` of several devices each batch is split over its 'data' axis (the
  state and data are replicated; XLA adds the gradient all-reduce). With
  `num_seeds` > 1 the state has a leading seed axis and the seeds train side by
  side in one program (vmap), each with its own key, batches and weights;
  metrics are then [steps, num_seeds].
  """
  b = config.batch_size
  steps = steps_per_epoch(num_slices, b)
  train_step = make_train_step(config, g, d)
  loop = resolve_train_loop(train_loop or config.get("train_loop", "auto"))
  if mesh is not None and mesh.size > 1:
    batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    split = lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)
  else:
    split = lambda x: x

  def epoch_order(state: TrainState):
    # The permutation key depends only on the base key and the epoch number, so
    # a resumed run draws the same batches as an uninterrupted one.
    perm_key = jax.random.fold_in(jax.random.fold_in(state.key, 0x0E0C), state.epoch)
    return jax.random.permutation(perm_key, num_slices)[: steps * b].reshape(steps, b)

  def gather(data: DeviceData, idx):
    return data.slices[idx], data.cond[idx], data.flip_ok[idx], data.spread[idx]

  def step_on_batch(state: TrainState, real3, cond, flip_ok, spread):
    key = jax.random.fold_in(state.key, state.step)
    return train_step(state, split(real3), split(cond), split(flip_ok), split(spread), key)

  if num_seeds > 1:
    one_seed_order = epoch_order
    # [seeds, steps, b] -> [steps, seeds, b]: the loops below run over steps.
    epoch_order = lambda state: jnp.swapaxes(jax.vmap(one_seed_order)(state), 0, 1)
    step_on_batch = jax.vmap(step_on_batch)

  if loop == "scan":
    def train_epoch(state: TrainState, data: DeviceData):
      state, metrics = jax.lax.scan(lambda s, idx: step_on_batch(s, *gather(data, idx)), state,
                                    epoch_order(state))
      return state.replace(epoch=state.epoch + 1), metrics
    # The old state is dead once the new one exists: donating it lets XLA update
    # the parameters and optimizer moments in place.
    return jax.jit(train_epoch, donate_argnums=0)

  # The step sees only its batch, so one compiled step serves data sets of any size.
  order_fn = jax.jit(epoch_order)
  gather_fn = jax.jit(lambda data, order, i: gather(data, order[i]))
  step_fn = jax.jit(step_on_batch, donate_argnums=0)
  finish_fn = jax.jit(lambda state: state.replace(epoch=state.epoch + 1), donate_argnums=0)

  def train_epoch_steps(state: TrainState, data: DeviceData):
    order = order_fn(state)
    collected = []
    for i in range(steps):
      state, m = step_fn(state, *gather_fn(data, order, jnp.int32(i)))
      collected.append(m)
    metrics = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *collected)
    return finish_fn(state), metrics

  return train_epoch_steps


def device_data(ds: dataset_lib.SliceDataset, levels) -> DeviceData:
  slices = augment_lib.normalise(jnp.asarray(ds.slices))
  cond = jnp.asarray(conditions.encode(levels, ds.level, ds.pattern))
  flip_ok = jnp.asarray(np.isin(ds.pattern, ("normal", "bilateral")))
  spread = condition_spread(np.asarray(slices[:, 1]), ds.level, ds.pattern)
  return DeviceData(slices=slices, cond=cond, flip_ok=flip_ok, spread=jnp.asarray(spread))


def condition_spread(images: np.ndarray, level, pattern, pairs: int = 2000, seed: int = 0) -> np.ndarray:
  """[N] mean |x_i - x_j| over random pairs of slices of each slice's (level, pattern),
  in the networks' range [-1, 1]: how far apart two real slices of a condition are.

  images: [N, 64, 64] max-normalised to [0, 1]. A condition with one slice gets the
  mean over all conditions; the result is at least 1e-6.
  """
  rng = np.random.default_rng(seed)
  level, pattern = np.asarray(level).astype(str), np.asarray(pattern).astype(str)
  out = np.full(len(images), np.nan, np.float32)
  for key in set(zip(level, pattern)):
    idx = np.flatnonzero((level == key[0]) & (pattern == key[1]))
    if len(idx) < 2:
      continue
    i, j = rng.choice(idx, pairs), rng.choice(idx, pairs)
    keep = i != j
    out[idx] = 2.0 * np.mean(np.abs(images[i[keep]] - images[j[keep]]))
  if np.isnan(out).all():
    return np.ones(len(images), np.float32)
  out = np.where(np.isnan(out), np.nanmean(out), out)
  # Identical slices have no spread: a floor keeps the mode-seeking ratio finite.
  return np.maximum(out, 1e-6).astype(np.float32)


# ----------------------------------------------------------------------------
# What sampling needs.
# ----------------------------------------------------------------------------
def sampler_variables(state: TrainState, config, g, train_cond: Array) -> dict:
  """Generator variables for sampling: weights and the statistics that fit them.

  With an EMA generator the running BatchNorm statistics of the raw weights do
  not fit the averaged weights, so they are recomputed for the EMA weights, on
  conditions drawn as often as training drew them (rows of `train_cond` [N, C],
  the training set's condition vectors).
  """
  if config.optim.ema_decay > 0:
    stats = recompute_batch_stats(g, state.ema_params, state.g_stats, config, train_cond,
                                  jax.random.fold_in(state.key, 0xE3A))
    return {"params": state.ema_params, "batch_stats": stats}
  return {"params": state.g_params, "batch_stats": state.g_stats}


def make_sampler_fn(config, g) -> Callable:
  """Jitted (state, train_cond) -> sampler_variables(state, config, g, train_cond).

  Compiled once per run: run eagerly, the EMA statistics' scan is traced and
  compiled again at every call, 8-16 s per epoch at the CPU schedule's widths.
  """
  return jax.jit(lambda state, train_cond: sampler_variables(state, config, g, train_cond))


def recompute_batch_stats(g, params, stats, config, train_cond, key, batches: int = 50,
                          batch: int = 32):
  """Runs G in training mode on `batches` random batches so that its BatchNorm
  running statistics (momentum 0.9: 0.9**50 < 1%) describe `params`. Conditions
  are rows of `train_cond` drawn uniformly, i.e. at the training frequencies (no
  condition the data lacks). The spectral-norm vectors are kept as they are."""
  conds = jnp.asarray(train_cond)

  def body(s, k):
    k_z, k_c, k_n = jax.random.split(k, 3)
    z = jax.random.normal(k_z, (batch, config.model.z_dim))
    y = conds[jax.random.randint(k_c, (batch,), 0, conds.shape[0])]
    _, upd = g.apply({"params": params, "batch_stats": s}, z, y, jax.random.split(k_n, batch),
                     train=True, mutable=["batch_stats"])
    # Keep the spectral-norm vectors of the checkpoint: only BatchNorm is refitted.
    old = flax.traverse_util.flatten_dict(s)
    new = flax.traverse_util.unflatten_dict({
        p: (v if p[-1] in ("mean", "var") else old[p])
        for p, v in flax.traverse_util.flatten_dict(upd["batch_stats"]).items()})
    return new, None

  out, _ = jax.lax.scan(body, stats, jax.random.split(key, batches))
  return out


# ----------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------
def _stderr(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def write_run_config(workdir: str, config, dataset: dataset_lib.SliceDataset | None = None) -> None:
  """Writes <workdir>/config.json (the config, the training counts per condition and
  what produced the run), atomically."""
  record = {"config": json.loads(config.to_json()), "provenance": provenance.describe()}
  if dataset is not None:
    record["data_counts"] = data_counts(dataset)
  old = read_run_record(workdir)
  if old is not None:
    # A resumed run keeps what produced each earlier part of it.
    record["earlier_provenance"] = old.get("earlier_provenance", []) + [old.get("provenance")]
  text = json.dumps(record, indent=2).encode()
  dataset_lib.atomic_write(os.path.join(workdir, "config.json"), lambda f: f.write(text))


def data_counts(dataset: dataset_lib.SliceDataset) -> dict[str, int]:
  """Slices per "level/pattern" present, as config.json records what a run trained on."""
  return {f"{l}/{p}": k for (l, p), k in dataset.counts().items() if k}


def read_run_record(workdir: str) -> dict | None:
  """<workdir>/config.json as written by `write_run_config`; None if the workdir has no run."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


# Fields added after runs were first written, with the value that reproduces what
# a run without the field computed: an older run resumes and samples as what it was.
_ADDED_FIELDS = {
    "model": {"noise_full_res": False, "g_cond": "concat", "d_cond": "input", "d_coords": False,
              "output_peak": 1.0},
    "loss": {"mode_seeking": 0.0, "mode_seeking_target": 1.0},
    "optim": {"ema_warmup": False},
    "augment": {"renormalise": False, "diff_shift": 0, "diff_cutout": 0.0, "diff_intensity": 0.0,
                "blend_prob": 1.0},
}


def read_run_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The config a run in `workdir` was trained with; None if there is none.

  Fields added since the run was written get the values it computed with
  (_ADDED_FIELDS), so every reader sees a complete config.
  """
  record = read_run_record(workdir)
  if record is None:
    return None
  config = record["config"]
  for block, fields in _ADDED_FIELDS.items():
    if isinstance(config.get(block), dict):
      config[block] = {**fields, **config[block]}
  return ml_collections.ConfigDict(config)


def _plain(x):
  """Config values as comparable plain data (tuples and lists alike)."""
  if isinstance(x, (ml_collections.ConfigDict, dict)):
    return {k: _plain(v) for k, v in dict(x).items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x


def check_resumable(saved, config) -> None:
  """Raises TrainError naming a field that differs from the run being resumed."""
  for field in _RESUME_FIELDS:
    a, b = _plain(saved.get(field)), _plain(config.get(field))
    for free in _RESUME_FREE_FIELDS:
      block, _, name = free.partition(".")
      if block == field and isinstance(a, dict) and isinstance(b, dict):
        a.pop(name, None)
        b.pop(name, None)
    if a != b:
      if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
          if a.get(k) != b.get(k):
            raise TrainError(
                f"config field {field}.{k} is {b.get(k)!r} but the run in this workdir was "
                f"trained with {a.get(k)!r}; resume with the same value or use another --workdir")
      raise TrainError(f"config field {field} is {b!r} but the run in this workdir was trained "
                       f"with {a!r}; resume with the same value or use another --workdir")


def _truncate_metrics(workdir: str, last_epoch: int) -> None:
  """Drops log lines of epochs after the restored checkpoint (a killed run's leftovers)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  text = "".join(json.dumps(r) + "\n" for r in runlog.read(workdir) if r["epoch"] <= last_epoch)
  dataset_lib.atomic_write(path, lambda f: f.write(text.encode()))


def seed_runs(config, workdir: str) -> list[tuple[ml_collections.ConfigDict, str]]:
  """(config, workdir) of each seed a run trains.

  One seed trains in `workdir` itself. With config field `num_seeds` = S > 1, seeds
  seed .. seed+S-1 train side by side, each a complete run of its own (config,
  checkpoints, logs) in `<workdir>/seed_<seed>`, so sampling and evaluation take
  any of them as an ordinary workdir.
  """
  if config.num_seeds == 1:
    return [(config, workdir)]
  runs = []
  for i in range(config.num_seeds):
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed = config.seed + i
    c.num_seeds = 1
    runs.append((c, os.path.join(workdir, f"seed_{c.seed}")))
  return runs


def _stack(trees):
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i):
  return jax.tree_util.tree_map(lambda x: x[i], tree)


def train(config: ml_collections.ConfigDict, workdir: str, dataset: dataset_lib.SliceDataset,
          log: Callable[[str], None] = _stderr,
          should_stop: Callable[[], bool] = lambda: False) -> TrainState:
  """Trains (or resumes) a run in `workdir` and returns the final state.

  A workdir with training checkpoints resumes from the newest; a finished run
  says so and returns. The checkpoint of every epoch is written before the
  function returns. With `num_seeds` > 1 the returned state has a leading seed axis.
  `should_stop` is asked after each epoch's checkpoint (launch.py sets it on
  Ctrl-C): a True ends the run there, to be resumed later.

  In a job of several processes (docs/multihost.md) every process calls this with
  the same arguments; each batch is split over the devices of all of them, and
  only process 0 writes the run record, logs, grids and progress (checkpoints are
  written by all together, through orbax).
  """
  # --- Config, devices and data. ---
  writer = jax.process_index() == 0
  if not writer:
    log = lambda msg: None
  check_config(config)
  levels = conditions.check_levels(config.data.levels)
  if len(dataset) < config.batch_size:
    raise ValueError(f"config field batch_size ({config.batch_size}) is larger than the data set "
                     f"({len(dataset)} slices)")
  mesh = make_mesh(config.num_devices, config.batch_size, log)
  runs = seed_runs(config, workdir)
  from spect_fastgan_jax import preflight  # the reliability checks (docs/reliability.md)
  for c, w in runs:
    # Creates w and proves it writable before the compile, so an unwritable or full
    # workdir stops here with one line and nothing written.
    preflight.check_writable(w)
    saved = read_run_config(w)
    if saved is not None:
      check_resumable(saved, c)

  g, d = models.from_config(config.model, conditions.condition_dim(levels))
  data = replicate(device_data(dataset, levels), mesh)
  n = len(dataset)
  steps = steps_per_epoch(n, config.batch_size)
  num_seeds = len(runs)

  # --- State: fresh or resumed. ---
  ckpts = [checkpoints.RunCheckpoints(w, config.checkpoint.keep_train_states) for _, w in runs]
  try:
    fresh = [create_train_state(c, g, d) for c, _ in runs]
    for _, w in runs:  # room for a training state and a sampler checkpoint (smaller)
      preflight.check_free_space(w, 2 * preflight.tree_bytes(fresh[0]), "the first checkpoints")
    restored = [ck.restore_latest(f, log) for ck, f in zip(ckpts, fresh)]
    lasts = [e for e, _ in restored]
    states = [st for _, st in restored]
    if len(set(lasts)) > 1:
      # Seeds train in one program, so they must stand at the same epoch.
      if None in lasts:
        log("warning: some seeds have no checkpoint; all seeds start from epoch 0")
        lasts, states = [None] * num_seeds, fresh
      else:
        common = min(lasts)
        log(f"seeds stand at epochs {lasts}; all resume from epoch {common}")
        states = [ck.restore_train(common, f) for ck, f in zip(ckpts, fresh)]
        lasts = [common] * num_seeds
    last = lasts[0]
    # Seeds differ only in their key, which the state carries: one function serves all.
    sampler_fn = make_sampler_fn(config, g)
    if last is not None:
      every = config.checkpoint.sampler_every_epochs
      for (c, w), ck, st in zip(runs, ckpts, states):
        # The two saves of an epoch finish in either order: a run killed between them
        # has this training state without its sampler checkpoint; write it now.
        if (last % every == 0 or last == config.num_epochs) and not ck.has_sampler(last):
          log(f"writing the missing sampler checkpoint of epoch {last} in {w}")
          ck.save(last, None, sampler_fn(replicate(st, mesh), data.cond))
      for _, w in runs:
        if writer:
          _truncate_metrics(w, last)
      if last >= config.num_epochs:
        log(f"run in {workdir} is finished: epoch {last} of {config.num_epochs} is saved; "
            "nothing to do (raise --config.num_epochs to train on)")
        return states[0] if num_seeds == 1 else _stack(states)
      log(f"resuming {workdir} from epoch {last} (step {int(states[0].step)})")
    for c, w in runs:
      if writer:
        write_run_config(w, c, dataset)
    state = replicate(states[0] if num_seeds == 1 else _stack(states), mesh)
    first_epoch = (last or 0) + 1

    log(f"training on {n} slices ({', '.join(levels)}), condition {conditions.condition_names(levels)}, "
        f"{steps} steps of batch {config.batch_size} per epoch, epochs {first_epoch}..{config.num_epochs}"
        + (f", {num_seeds} seeds" if num_seeds > 1 else "")
        + (f", batch split over {mesh.size} devices" if mesh.size > 1 else ""))
    train_epoch = make_train_epoch(config, g, d, n, mesh=mesh, num_seeds=num_seeds)
    log("compiling the training step (about a minute on a CPU) ...")
    logs = [runlog.RunLog(w, config.log.tensorboard) if writer else None for _, w in runs]
    monitor = None
    if config.log.monitor_every_epochs and writer:
      from spect_fastgan_jax.evaluation import monitor as monitor_lib
      monitor = monitor_lib.Monitor(config, runs[0][1], dataset, g,
                                    int(config.log.monitor_per_condition), log)
    progress = _progress(config, first_epoch, show=writer)
    try:
      for epoch in range(first_epoch, config.num_epochs + 1):
        t0 = time.perf_counter()
        state, metrics = train_epoch(state, data)
        means = jax.device_get(jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), metrics))
        per_seed = [{k: float(v if num_seeds == 1 else v[i]) for k, v in means.items()}
                    for i in range(num_seeds)]
        for (c, _), m in zip(runs, per_seed):
          if not all(math.isfinite(v) for v in m.values()):
            raise TrainError(
                f"non-finite loss in epoch {epoch} (seed {c.seed}: "
                f"{', '.join(f'{k}={v}' for k, v in m.items())}); the run stopped. The last good "
                f"checkpoint is epoch {epoch - 1}; try a lower learning rate (config fields "
                "optim.lr_g, optim.lr_d)")
        seconds = time.perf_counter() - t0
        for i, ((c, w), ck, rl, m) in enumerate(zip(runs, ckpts, logs, per_seed)):
          st = state if num_seeds == 1 else _unstack(state, i)
          sampler = None
          if epoch % config.checkpoint.sampler_every_epochs == 0 or epoch == config.num_epochs:
            sampler = sampler_fn(st, data.cond)
          ck.save(epoch, st, sampler)
          m["epoch_seconds"] = seconds
          want_grid = config.log.sample_every_epochs and (
              epoch % config.log.sample_every_epochs == 0 or epoch == config.num_epochs)
          want_monitor = config.log.monitor_every_epochs and (
              epoch % config.log.monitor_every_epochs == 0 or epoch == config.num_epochs)
          if (want_grid or want_monitor) and sampler is None:
            sampler = sampler_fn(st, data.cond)
          if not writer:
            continue
          if sampler is not None and jax.process_count() > 1:
            sampler = jax.device_get(sampler)  # process 0 alone computes with it: a host copy
          if want_monitor:
            scores = monitor(sampler)
            m.update({f"monitor/{k}": v for k, v in scores.items()})
            warning = monitor.warning(scores)
            if warning:
              log(f"\nepoch {epoch}{f' (seed {c.seed})' if num_seeds > 1 else ''}: warning: {warning}")
          rl.write(epoch, m)
          if want_grid:
            _log_grid(rl, w, epoch, sampler, g, c)
        progress.update(epoch, per_seed[0])
        if _all_agree(should_stop()) and epoch < config.num_epochs:
          log(f"\nstopped after epoch {epoch}, whose checkpoint is saved; rerun the same command "
              "to resume")
          break
    finally:
      progress.close()
      for rl in logs:
        if rl is not None:
          rl.close()
    return state
  finally:
    # Async saves must land before the process may exit.
    for ck in ckpts:
      ck.close()


def _all_agree(flag: bool) -> bool:
  """`flag` of any process, on every process: all stop after the same epoch."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def _log_grid(rl, workdir, epoch, g_vars, g, config) -> None:
  from spect_fastgan_jax import sample as sample_lib
  grid = sample_lib.condition_grid(g, g_vars, config, per_condition=4, seed=0)
  path = os.path.join(workdir, "samples_during_training", f"epoch_{epoch:04d}.png")
  sample_lib.save_png(grid, path)
  rl.image(epoch, "samples", grid)


class _progress:
  """Epoch progress with an ETA on stderr (tqdm), or silent."""

  def __init__(self, config, first_epoch, show: bool = True):
    self._bar = None
    self._last_monitor = {}
    if config.log.progress and show:
      from tqdm import tqdm
      self._bar = tqdm(total=config.num_epochs, initial=first_epoch - 1, unit="epoch",
                       file=sys.stderr, dynamic_ncols=True)

  def update(self, epoch, metrics):
    if "monitor/diversity_min" in metrics:
      self._last_monitor = {"div": f"{metrics['monitor/diversity_min']:.2f}",
                            "acc": f"{metrics['monitor/accuracy']:.2f}",
                            "dx": f"{metrics['monitor/centroid_offset_px']:+.2f}"}
    if self._bar is not None:
      self._bar.set_postfix({**{k: f"{metrics[k]:.3f}" for k in METRICS},
                             **self._last_monitor})
      self._bar.update(1)

  def close(self):
    if self._bar is not None:
      self._bar.close()
