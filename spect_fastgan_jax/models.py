"""Generator and discriminator of the conditional FastGAN (paper Figs. 1-3, docs/model.md).

Layout is NHWC throughout: images are [B, 64, 64, 1] in [-1, 1]. The layers they
are built from are layers.py.

Mutable state lives in one collection, 'batch_stats': BatchNorm running means and
variances, and the power-iteration vectors `u` of spectral normalisation. Both
are updated only in training mode, so sampling (train=False) is a pure function
of the checkpoint and the per-sample random keys.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from spect_fastgan_jax.errors import ConfigError, check_field, is_whole
from spect_fastgan_jax.layers import (CondNorm, Conv, Dense, NoiseInjection, SpectralKernel, avgpool2,
                                      batch_norm, glu, norm, resolve_conv_impl)

Array = jax.Array
Dtype = Any

G_CONDS = ("concat", "cbn")
D_CONDS = ("input", "projection", "both")


class UpBlock(nn.Module):
  """nearest x2 -> conv3x3 (2*out) -> [noise] -> BN -> GLU.

  With `noise_keys`, per-pixel noise with a learned scale is injected after the
  conv (as in UpBlockComp); with a condition `y`, the BatchNorm is conditional.
  """
  features: int
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: Array, train: bool, noise_keys: Array | None = None,
               y: Array | None = None) -> Array:
    x = Conv(2 * self.features, 3, spectral_norm=self.spectral_norm, dtype=self.dtype,
             upsample=True, impl=self.conv_impl)(x, train)
    if noise_keys is not None:
      x = NoiseInjection(name="noise0")(x, noise_keys)
    return glu(norm(x, y, train, self.dtype))


class UpBlockComp(nn.Module):
  """UpBlock, then a second conv3x3 -> BN -> GLU; noise injected after each conv."""
  features: int
  spectral_norm: bool = True
  noise_injection: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: Array, noise_keys: Array, train: bool, y: Array | None = None) -> Array:
    for i in range(2):
      x = Conv(2 * self.features, 3, spectral_norm=self.spectral_norm, dtype=self.dtype,
               upsample=i == 0, impl=self.conv_impl)(x, train)
      if self.noise_injection:
        x = NoiseInjection(name=f"noise{i}")(x, jax.vmap(lambda k: jax.random.fold_in(k, i))(noise_keys))
      x = glu(norm(x, y, train, self.dtype))
    return x


class SkipLayerExcitation(nn.Module):
  """The paper's single SLE: the 4x4 map gates the 64x64 map channel-wise.

  conv4x4 without padding turns the 4x4 map into 1x1 (no adaptive pooling is
  needed at this size) -> LeakyReLU -> conv1x1 -> sigmoid.
  """
  slope: float = 0.1
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, small: Array, big: Array, train: bool) -> Array:
    f = big.shape[-1]
    g = Conv(f, 4, padding="VALID", spectral_norm=self.spectral_norm, dtype=self.dtype)(small, train)
    g = nn.leaky_relu(g, self.slope)
    g = Conv(f, 1, padding="VALID", spectral_norm=self.spectral_norm, dtype=self.dtype)(g, train)
    return big * jax.nn.sigmoid(g)


class Generator(nn.Module):
  """G(z | y): [B, z_dim] latent and [B, C] condition -> [B, 64, 64, 1] in [-1, 1].

  Attributes:
    channels: widths at 4, 8, 16, 32 and 64 px.
    noise_full_res: also inject per-pixel noise at 64 px (FastGAN injects it at 8 and
      32 px only), so that G can draw the fine count noise of real slices.
    cond: how y enters: "concat" (the paper: y joins z before the dense layer) or
      "cbn" (also conditional BatchNorm in every block, see `norm`); checked by
      `from_config`.
    output_peak: the output value that stands for a slice's maximum count
      (augment.to_model_range); sampling maps outputs back with it. No parameter
      depends on it.
    normalise_output: divide each output's counts (output + 1) by their own maximum and
      map that maximum to `output_peak`, as every real slice is max-normalised before
      D sees it. D then judges G's slices as the paper's statistics see them (mean
      counts relative to the hottest pixel), and G's overall level is free, so its
      brightest pixels need not sit where tanh flattens. Paper: False.
  """
  channels: Sequence[int] = (256, 128, 128, 64, 32)
  embed_dim: int = 64
  noise_injection: bool = True
  spectral_norm: bool = True
  sle_slope: float = 0.1
  dtype: Dtype = jnp.float32
  conv_impl: str = "xla"
  noise_full_res: bool = False
  cond: str = "concat"
  output_peak: float = 1.0
  normalise_output: bool = False

  @nn.compact
  def __call__(self, z: Array, y: Array, noise_keys: Array, train: bool) -> Array:
    """z: [B, z_dim]; y: [B, C] 0/1; noise_keys: [B, 2] uint32, one key per sample."""
    sn, dt = self.spectral_norm, self.dtype
    c4, c8, c16, c32, c64 = self.channels
    h = Dense(self.embed_dim, sn, dt, name="embed")(jnp.concatenate([z, y], axis=-1), train)
    # Input block: transposed conv4x4 of a 1x1 map is a dense layer to a 4x4 map.
    w = SpectralKernel((self.embed_dim, 4 * 4 * 2 * c4), sn, name="init_w")(train)
    h = (h.astype(dt) @ w.astype(dt)).reshape(-1, 4, 4, 2 * c4)
    yc = y if self.cond == "cbn" else None
    if yc is None:
      feat4 = glu(batch_norm(train, dt, name="init_bn")(h))
    else:
      feat4 = glu(CondNorm(dt, name="init_bn")(h, yc, train))
    keys = [jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(noise_keys) for i in range(3)]
    ci = self.conv_impl
    feat8 = UpBlockComp(c8, sn, self.noise_injection, dt, ci, name="up8")(feat4, keys[0], train, yc)
    feat16 = UpBlock(c16, sn, dt, ci, name="up16")(feat8, train, y=yc)
    feat32 = UpBlockComp(c32, sn, self.noise_injection, dt, ci, name="up32")(feat16, keys[1], train, yc)
    feat64 = UpBlock(c64, sn, dt, ci, name="up64")(
        feat32, train, keys[2] if self.noise_full_res else None, yc)
    feat64 = SkipLayerExcitation(self.sle_slope, sn, dt, name="sle")(feat4, feat64, train)
    out = Conv(1, 3, spectral_norm=sn, dtype=dt, name="to_img")(feat64, train)
    out = jnp.tanh(out.astype(jnp.float32))
    if self.normalise_output:
      counts = out + 1.0
      peak = jnp.max(counts, axis=(1, 2, 3), keepdims=True)
      # The floor only guards an all-background output (-1 everywhere) from 0 / 0.
      out = counts * ((1.0 + self.output_peak) / jnp.maximum(peak, 1e-3)) - 1.0
    return out


class DownBlockComp(nn.Module):
  """Mean of conv4x4/2 -> BN -> LReLU -> conv3x3 -> BN -> LReLU and avgpool -> conv1x1 -> BN -> LReLU."""
  features: int
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    sn, dt = self.spectral_norm, self.dtype
    m = Conv(self.features, 4, stride=2, padding=((1, 1), (1, 1)), spectral_norm=sn, dtype=dt)(x, train)
    m = nn.leaky_relu(batch_norm(train, dt)(m), 0.2)
    m = Conv(self.features, 3, spectral_norm=sn, dtype=dt)(m, train)
    m = nn.leaky_relu(batch_norm(train, dt)(m), 0.2)
    d = Conv(self.features, 1, spectral_norm=sn, dtype=dt)(avgpool2(x), train)
    d = nn.leaky_relu(batch_norm(train, dt)(d), 0.2)
    return (m + d) / 2


class SimpleDecoder(nn.Module):
  """n UpBlocks -> conv3x3 to one channel -> tanh (the self-supervision decoders)."""
  channels: Sequence[int]
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    for c in self.channels:
      x = UpBlock(c, self.spectral_norm, self.dtype, self.conv_impl)(x, train)
    x = Conv(1, 3, spectral_norm=self.spectral_norm, dtype=self.dtype)(x, train)
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """D(x, y): [B, 64, 64, 1] image and [B, C] condition -> [B, 5, 5] patch logits.

  With `crop_offsets` (real images only) it also returns the two decoders'
  reconstructions: the whole image from B2 (8x8) and, from an 8x8 crop of B1
  (16x16) at offset (i, j), the 32x32 image crop at (4i, 4j).

  Attributes:
    channels: widths at 64 (input block), 32 (B0), 16 (B1) and 8 (B2) px.
    dec_channels: decoder widths after each up block: 16, 32, 64 px.
    cond: how y enters: "input" (the paper: C constant image channels beside x),
      "projection" (a projection head, Miyato & Koyama 2018: each patch logit gains
      <embed(y), features> averaged over its 4x4 window of the output block), or "both".
      Checked by `from_config`.
    coords: two more input channels holding each pixel's row and column in [-1, 1]
      (CoordConv, Liu et al. 2018), so D can judge where the brain sits: a sub-pixel
      left/right offset of a whole generated brain biases the left/right ratio.
    aux_head: an auxiliary classifier (AC-GAN, Odena et al. 2017): one logit per
      entry of the condition vector from the output block's mean features, sown as
      intermediates/aux_logits; config loss.condition_aux trains it on real slices
      and asks G's slices to be classified as their condition.
  """
  channels: Sequence[int] = (32, 64, 128, 256)
  out_channels: int = 256
  dec_channels: Sequence[int] = (128, 64, 64)
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "xla"
  cond: str = "input"
  coords: bool = False
  aux_head: bool = False

  @nn.compact
  def __call__(self, x: Array, y: Array, train: bool, crop_offsets: Array | None = None):
    """x: [B, 64, 64, 1]; y: [B, C]; crop_offsets: [B, 2] int in 0..8 or None."""
    sn, dt, ci = self.spectral_norm, self.dtype, self.conv_impl
    b, hh, ww, _ = x.shape
    inp = x
    if self.cond in ("input", "both"):
      cond = jnp.broadcast_to(y[:, None, None, :].astype(x.dtype), (b, hh, ww, y.shape[-1]))
      inp = jnp.concatenate([x, cond], axis=-1)
    if self.coords:
      r = jnp.linspace(-1.0, 1.0, hh, dtype=x.dtype)
      c = jnp.linspace(-1.0, 1.0, ww, dtype=x.dtype)
      grid = jnp.stack(jnp.meshgrid(r, c, indexing="ij"), axis=-1)
      inp = jnp.concatenate([inp, jnp.broadcast_to(grid, (b, hh, ww, 2))], axis=-1)
    h = Conv(self.channels[0], 3, spectral_norm=sn, dtype=dt, name="in_conv")(inp, train)
    h = nn.leaky_relu(h, 0.2)
    b0 = DownBlockComp(self.channels[1], sn, dt, name="down32")(h, train)
    b1 = DownBlockComp(self.channels[2], sn, dt, name="down16")(b0, train)
    b2 = DownBlockComp(self.channels[3], sn, dt, name="down8")(b1, train)
    o = Conv(self.out_channels, 1, spectral_norm=sn, dtype=dt, name="out_conv1")(b2, train)
    o = nn.leaky_relu(batch_norm(train, dt, name="out_bn")(o), 0.2)
    logits = Conv(1, 4, padding="VALID", spectral_norm=sn, dtype=dt, name="out_conv4")(o, train)
    logits = logits[..., 0].astype(jnp.float32)
    if self.cond in ("projection", "both"):
      e = Dense(self.out_channels, sn, dt, name="proj_embed")(y, train)          # [B, Cout]
      inner = jnp.sum(o * e[:, None, None, :].astype(o.dtype), axis=-1).astype(jnp.float32)
      logits = logits + jax.lax.reduce_window(inner, 0.0, jax.lax.add, (1, 4, 4), (1, 1, 1),
                                              "VALID") / 16.0
    if self.aux_head:
      aux = Dense(y.shape[-1], sn, dt, name="aux_head")(jnp.mean(o, axis=(1, 2)), train)
      self.sow("intermediates", "aux_logits", aux.astype(jnp.float32))
    if crop_offsets is None:
      return logits
    rec_full = SimpleDecoder(tuple(self.dec_channels), sn, dt, ci, name="dec_global")(b2, train)
    crop = jax.vmap(lambda f, o: jax.lax.dynamic_slice(f, (o[0], o[1], 0), (8, 8, f.shape[-1])))(
        b1, crop_offsets)
    rec_crop = SimpleDecoder(tuple(self.dec_channels[:2]), sn, dt, ci, name="dec_region")(crop, train)
    return logits, rec_full, rec_crop


def crop_target(x: Array, crop_offsets: Array) -> Array:
  """T(x): the 32x32 crop of x [B, 64, 64, 1] at (4i, 4j) matching a B1 crop at (i, j)."""
  return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (4 * o[0], 4 * o[1], 0), (32, 32, im.shape[-1])))(
      x, crop_offsets)


def from_config(model_config, aux_head: bool = False) -> tuple[Generator, Discriminator]:
  """Builds G and D from `config.model` (they take the condition's size from their
  inputs), D with the auxiliary condition head if `aux_head` (training passes
  config.loss.condition_aux > 0); raises ConfigError naming a bad field."""
  conv_impl = resolve_conv_impl(model_config.get("conv_impl", "auto"))
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(model_config.dtype)
  if dtype is None:
    raise ConfigError(f"config field model.dtype must be 'float32' or 'bfloat16', got {model_config.dtype!r}")
  if len(model_config.g_channels) != 5:
    raise ConfigError("config field model.g_channels needs 5 widths (4, 8, 16, 32, 64 px), "
                     f"got {list(model_config.g_channels)}")
  if len(model_config.d_channels) != 4:
    raise ConfigError("config field model.d_channels needs 4 widths (64, 32, 16, 8 px), "
                     f"got {list(model_config.d_channels)}")
  if len(model_config.dec_channels) != 3:
    raise ConfigError("config field model.dec_channels needs 3 widths (16, 32, 64 px), "
                     f"got {list(model_config.dec_channels)}")
  g_cond, d_cond, peak = model_config.g_cond, model_config.d_cond, model_config.output_peak
  if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not 0 < peak <= 1:
    raise ConfigError(f"config field model.output_peak must be a number in (0, 1], got {peak!r}")
  peak = float(peak)
  if g_cond not in G_CONDS:
    raise ConfigError(f"config field model.g_cond must be one of {G_CONDS}, got {g_cond!r}")
  if d_cond not in D_CONDS:
    raise ConfigError(f"config field model.d_cond must be one of {D_CONDS}, got {d_cond!r}")
  for field in ("z_dim", "embed_dim", "d_out_channels"):
    check_field(is_whole(model_config[field]) and model_config[field] >= 1, f"model.{field}",
                model_config[field], "must be a whole number >= 1")
  for field in ("noise_injection", "spectral_norm", "noise_full_res", "d_coords", "normalise_output"):
    check_field(isinstance(model_config[field], bool), f"model.{field}", model_config[field],
                "must be True or False")
  for field in ("g_channels", "d_channels", "dec_channels"):
    if any(int(c) < 1 for c in model_config[field]):
      raise ConfigError(f"config field model.{field} must be positive widths, got {list(model_config[field])}")
  g = Generator(channels=tuple(int(c) for c in model_config.g_channels),
                embed_dim=int(model_config.embed_dim),
                noise_injection=bool(model_config.noise_injection),
                spectral_norm=bool(model_config.spectral_norm),
                sle_slope=float(model_config.sle_slope), dtype=dtype, conv_impl=conv_impl,
                noise_full_res=bool(model_config.noise_full_res),
                cond=g_cond, output_peak=peak, normalise_output=bool(model_config.normalise_output))
  d = Discriminator(channels=tuple(int(c) for c in model_config.d_channels),
                    out_channels=int(model_config.d_out_channels),
                    dec_channels=tuple(int(c) for c in model_config.dec_channels),
                    spectral_norm=bool(model_config.spectral_norm), dtype=dtype, conv_impl=conv_impl,
                    cond=d_cond, coords=bool(model_config.d_coords), aux_head=bool(aux_head))
  return g, d
