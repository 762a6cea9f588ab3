"""The training step: the paper's steps (i)-(vi) (docs/model.md, "The training step").

G makes a batch (i); D sees the augmented real batch with both self-supervision
decoders and the fake batch (ii)-(v); both Adam states are updated from gradients of
the parameters at the start of the step (vi). The recipe's additions (docs/model.md,
"The recipe's additions") are each one helper or one branch below: DiffAugment, the
mode-seeking pairs, the auxiliary condition head, the EMA of G.

`make_train_step(config, g, d)` binds a config to `train_step` with its optimisers,
built once; train.make_train_epoch runs it over an epoch.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from spect_fastgan_jax import augment as augment_lib
from spect_fastgan_jax import input_pipeline, losses, models
from spect_fastgan_jax.errors import ConfigError
from spect_fastgan_jax.train_state import TrainState, make_optimizers

Array = jax.Array


def check_networks(config, d: models.Discriminator) -> None:
  """ConfigError where `d` cannot serve `config`'s losses (before any tracing)."""
  if float(config.loss.condition_aux) > 0 and not d.aux_head:
    raise ConfigError("config field loss.condition_aux > 0 needs D's auxiliary head: build the "
                      "networks with train.networks(config)")


def make_train_step(config, g: models.Generator, d: models.Discriminator) -> Callable:
  """(state, batch, key) -> (state, metrics): `train_step` for `config`, with both
  optimisers (Adam and the learning-rate schedule, train_state.make_optimizers) built
  once here. Not jitted: the callers jit it, or the epoch that runs it."""
  check_networks(config, d)
  return functools.partial(train_step, config=config, g=g, d=d, tx=make_optimizers(config))


def train_step(state: TrainState, batch: input_pipeline.Batch, key: Array, *, config,
               g: models.Generator, d: models.Discriminator,
               tx: tuple[optax.GradientTransformationExtraArgs, ...]) -> tuple[TrainState, dict]:
  """One step of both networks (use make_train_step, which binds the keywords).

  Args:
    state: the state before the step (donated by the callers).
    batch: real slices, their conditions, flip flags and condition spreads.
    key: the step's PRNG key (rng.py: fold_in(state.key, state.step)).
  Returns:
    (the state after the step, {metric: scalar} at the step's input parameters).
  """
  b = batch.real3.shape[0]
  k_aug, k_z, k_noise, k_crop, k_diff = jax.random.split(key, 5)
  k_diff_real, k_diff_fake = jax.random.split(k_diff)
  x = real_batch(k_aug, k_diff_real, batch, config.augment, g.output_peak)
  # The mode-seeking term's partners: a second image, from another z, of the batch's
  # first k rows (rows come in random order, so a random share of it).
  partners = (int(config.loss.mode_seeking_pairs) or b) if float(config.loss.mode_seeking) > 0 else 0
  g_cond = jnp.concatenate([batch.cond, batch.cond[:partners]])

  # (i) G makes the fake batch; its vjp is kept to send L_G's gradient back.
  def g_forward(g_params):
    fake, upd = g.apply({"params": g_params, "batch_stats": state.g_stats},
                        jax.random.normal(k_z, (b + partners, config.model.z_dim)), g_cond,
                        jax.random.split(k_noise, b + partners), train=True, mutable=["batch_stats"])
    return fake, upd["batch_stats"]
  fake_all, g_vjp, g_stats = jax.vjp(g_forward, state.g_params, has_aux=True)

  # (ii)-(v) One vjp of D's losses, pulled back twice: (1, 0) gives dL_D/dD and
  # (0, 1) gives dL_G/dfake, so one D pass over the fake batch serves both.
  offsets = jax.random.randint(k_crop, (b, 2), 0, 9)
  d_fn = functools.partial(d_losses, d=d, d_stats=state.d_stats, x=x, cond=batch.cond,
                           offsets=offsets, key=k_diff_fake, config=config)
  _, d_vjp, (d_stats, metrics) = jax.vjp(d_fn, state.d_params, fake_all[:b], has_aux=True)
  one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
  d_grads, _ = d_vjp((one, zero))
  _, fake_grad = d_vjp((zero, one))
  fake_grad = jnp.concatenate([fake_grad, jnp.zeros_like(fake_grad[:partners])])
  if partners:
    ms_grad, ms_metrics = mode_seeking(fake_all, b, partners, batch.spread, g.output_peak, config.loss)
    fake_grad, metrics = fake_grad + float(config.loss.mode_seeking) * ms_grad, {**metrics, **ms_metrics}
  (g_grads,) = g_vjp(fake_grad)

  # (vi) both optimiser updates at once, then the EMA of G.
  return apply_updates(state, tx, g_grads, d_grads, g_stats, d_stats, config.optim), metrics


def real_batch(key: Array, diff_key: Array, batch: input_pipeline.Batch, aug, output_peak: float) -> Array:
  """The real batch D sees: the paper's augmentation (augment.augment: flip, shift,
  the Eq. 6 blend), in the networks' range, then DiffAugment if on."""
  x = augment_lib.to_model_range(augment_lib.augment(
      key, batch.real3, batch.flip_ok, blend=aug.blend, max_shift=aug.max_shift, flip=aug.flip,
      renormalise=bool(aug.renormalise), blend_prob=float(aug.blend_prob)), output_peak)
  return diff_augment(diff_key, x, aug)


def diff_augment(key: Array, x: Array, aug) -> Array:
  """DiffAugment (augment.diff_augment) as `aug` sets it; `x` itself when it is off."""
  diff = dict(max_shift=int(aug.diff_shift), cutout=float(aug.diff_cutout),
              intensity=float(aug.diff_intensity))
  return augment_lib.diff_augment(key, x, **diff) if any(diff.values()) else x


def d_losses(d_params, fake: Array, *, d: models.Discriminator, d_stats, x: Array, cond: Array,
             offsets: Array, key: Array, config):
  """((L_D, L_G), (D's new BatchNorm statistics, metrics)) of one D pass over the real
  batch `x` (with the decoders, Eq. 4) and one over `fake` (Eqs. 1-3), plus the
  auxiliary condition terms when `loss.condition_aux` > 0: D's head learns the
  condition from real slices only; G is asked for slices it assigns to their condition."""
  aux_weight = float(config.loss.condition_aux)
  mutable = ["batch_stats", "intermediates"] if aux_weight > 0 else ["batch_stats"]
  (real_logits, rec_full, rec_crop), upd = d.apply(
      {"params": d_params, "batch_stats": d_stats}, x, cond, train=True, crop_offsets=offsets,
      mutable=mutable)
  real_aux = upd["intermediates"]["aux_logits"][0] if aux_weight > 0 else None
  fake_logits, upd = d.apply({"params": d_params, "batch_stats": upd["batch_stats"]},
                             diff_augment(key, fake, config.augment), cond, train=True, mutable=mutable)
  l_real, l_fake = losses.real_loss(real_logits), losses.fake_loss(fake_logits)
  l_rec = losses.recon_loss(rec_crop, models.crop_target(x, offsets), rec_full, x,
                            config.loss.recon_distance)
  l_g = losses.generator_loss(fake_logits)
  l_d = l_real + l_fake + l_rec
  metrics = {"d_real": l_real, "d_fake": l_fake, "recon": l_rec, "g": l_g}
  if aux_weight > 0:
    l_aux_real = losses.condition_aux_loss(real_aux, cond)
    l_aux_fake = losses.condition_aux_loss(upd["intermediates"]["aux_logits"][0], cond)
    l_d, l_g = l_d + aux_weight * l_aux_real, l_g + aux_weight * l_aux_fake
    metrics = {**metrics, "aux_real": l_aux_real, "aux_fake": l_aux_fake}
  return (l_d, l_g), (upd["batch_stats"], metrics)


def mode_seeking(fake_all: Array, b: int, partners: int, spread: Array, output_peak: float, loss_config):
  """(d loss / d fake_all, metrics) of the mode-seeking hinge (losses.mode_seeking_loss)
  between the first `partners` fakes and their partners, fake_all[b:]."""
  # batch.spread is in the paper's range [-1, 1]; the networks' range spans
  # 1 + output_peak, and the pairs are compared there.
  spread = spread[:partners] * (1.0 + output_peak) / 2.0
  (l_ms, ratio), grad = jax.value_and_grad(
      lambda f: losses.mode_seeking_loss(f[:partners], f[b:], spread, float(loss_config.mode_seeking_target)),
      has_aux=True)(fake_all)
  return grad, {"mode_seeking": l_ms, "pair_spread": ratio}


def apply_updates(state: TrainState, tx, g_grads, d_grads, g_stats, d_stats, optim) -> TrainState:
  """Both optimisers' updates (with the learning-rate schedule of the epoch), then the
  EMA of G's weights if `optim.ema_decay` > 0, warming up as (1 + t) / (10 + t) so the
  average forgets the random initial weights within the first epochs."""
  tx_g, tx_d = tx
  g_upd, g_opt = tx_g.update(g_grads, state.g_opt, state.g_params, epoch=state.epoch)
  d_upd, d_opt = tx_d.update(d_grads, state.d_opt, state.d_params, epoch=state.epoch)
  g_params = optax.apply_updates(state.g_params, g_upd)
  d_params = optax.apply_updates(state.d_params, d_upd)
  ema, ema_decay = state.ema_params, float(optim.ema_decay)
  if ema_decay > 0:
    t = state.step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t)) if optim.ema_warmup else ema_decay
    ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, g_params)
  return state.replace(step=state.step + 1, g_params=g_params, g_stats=g_stats, d_params=d_params,
                       d_stats=d_stats, g_opt=g_opt, d_opt=d_opt, ema_params=ema)
