"""Generator and discriminator of the conditional FastGAN (paper Figs. 1-3, MODEL.md).

Layout is NHWC throughout: images are [B, 64, 64, 1] in [-1, 1].

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

Array = jax.Array
Dtype = Any

# FastGAN's initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02).
_KERNEL_INIT = nn.initializers.normal(0.02)


def _bn_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _l2_normalize(v: Array, eps: float = 1e-12) -> Array:
  return v * jax.lax.rsqrt(jnp.maximum(jnp.sum(v * v), eps * eps))


class SpectralKernel(nn.Module):
  """A weight tensor, divided by its largest singular value when `enabled`.

  The kernel is viewed as a matrix [fan_in, out] (out = last axis), as PyTorch's
  spectral_norm does for convolutions. One power iteration per training call
  refines the stored vector `u`; in eval the stored `u` is used unchanged, so
  the normalised weight is a deterministic function of the checkpoint.
  """
  shape: Sequence[int]
  enabled: bool = True

  @nn.compact
  def __call__(self, update_stats: bool) -> Array:
    kernel = self.param("kernel", _KERNEL_INIT, tuple(self.shape))
    if not self.enabled:
      return kernel
    out = self.shape[-1]
    u_var = self.variable(
        "batch_stats", "u",
        lambda: _l2_normalize(jax.random.normal(self.make_rng("params"), (out,))))
    mat = kernel.reshape(-1, out)
    u = u_var.value
    # Written as [K, out] x [out, 1] and [1, K] x [K, out] matrix products:
    # XLA:CPU runs the plain matrix-vector forms 5x slower.
    v = jax.lax.stop_gradient(_l2_normalize((mat @ u[:, None])[:, 0]))
    w = (v[None, :] @ mat)[0]                               # mat^T v
    u_new = jax.lax.stop_gradient(_l2_normalize(w))
    sigma = jnp.sum(w * u_new)                              # v^T mat u_new
    if update_stats and not self.is_initializing():
      u_var.value = u_new
    return kernel / sigma


# How convolutions are lowered. Both give the same function of the same weights
# (to float32 rounding) and the same parameter tree, so checkpoints move freely
# between them:
#   "xla":    every convolution is one lax.conv_general_dilated (upsampling first).
#   "matmul": nearest-x2 upsampling followed by a 3x3 convolution runs as a
#             sub-pixel convolution: each of the 4 output phases is a 2x2
#             convolution of the low-resolution map, all 4 as one matmul over
#             2x2 windows. 2.25x fewer FLOPs, no upsampled map in memory, and
#             matmul gradients, which XLA:CPU runs 2-3x faster than the
#             gradients of the convolution it replaces (docs/benchmarks.md).
#             Other convolutions stay lax.conv_general_dilated.
CONV_IMPLS = ("xla", "matmul")

# Row (and column) weights of the sub-pixel form: output phase a of a 3x3 kernel
# over a nearest-x2 upsampled map reads the low-resolution rows (p-1, p) of a
# 2x2 window with taps (w0, w1 + w2) for a = 0 and (w0 + w1, w2) for a = 1.
def _phase_kernel(w: Array) -> Array:
  """[3, 3, Ci, Co] kernel -> [2*2*Ci, 2*2*Co] matrix: window taps (r, s, Ci) x phases (a, b, Co)."""
  ci, co = w.shape[2:]
  def taps(v, axis):
    v0, v1, v2 = (jnp.take(v, i, axis=axis) for i in range(3))
    # [window tap r, phase a, ...]
    return jnp.stack([jnp.stack([v0, v0 + v1]), jnp.stack([v1 + v2, v2])])
  rows = taps(w, 0)                       # [r, a, 3 (kernel column), Ci, Co]
  both = taps(rows, 2)                    # [s, b, r, a, Ci, Co]
  return both.transpose(2, 0, 4, 3, 1, 5).reshape(4 * ci, 4 * co)


def _windows(x: Array, k: int, out_h: int, out_w: int) -> Array:
  """[B, H+pad, W+pad, C] -> [B, out_h, out_w, k*k*C]: the k x k windows, taps major."""
  return jnp.concatenate([x[:, r:r + out_h, s:s + out_w] for r in range(k) for s in range(k)], axis=-1)


def upsample_conv3x3(x: Array, w: Array) -> Array:
  """conv3x3 'same' of upsample2(x), computed at x's resolution (sub-pixel form)."""
  b, h, wd, ci = x.shape
  co = w.shape[-1]
  cols = _windows(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), 2, h + 1, wd + 1)
  y = (cols.reshape(-1, 4 * ci) @ _phase_kernel(w).astype(x.dtype)).reshape(b, h + 1, wd + 1, 2, 2, co)
  # Output pixel (2i + a, 2j + c) is phase (a, c) of window (i + a, j + c).
  rows = [jnp.stack([y[:, a:a + h, c:c + wd, a, c] for c in range(2)], axis=3) for a in range(2)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * wd, co)


class Conv(nn.Module):
  """2-D convolution with optional spectral normalisation (no bias unless asked).

  With `upsample`, the input is first upsampled x2 (nearest); only 3x3 'same'
  convolutions take it. `impl` is one of CONV_IMPLS.
  """
  features: int
  kernel: int
  stride: int = 1
  padding: Any = "SAME"
  use_bias: bool = False
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32
  upsample: bool = False
  impl: str = "xla"

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    w = SpectralKernel((self.kernel, self.kernel, x.shape[-1], self.features),
                       self.spectral_norm, name="w")(train)
    x = x.astype(self.dtype)
    if self.upsample and (self.kernel, self.stride, self.padding) != (3, 1, "SAME"):
      raise ValueError("upsampling convolutions must be 3x3, stride 1, 'same'")
    if self.impl not in CONV_IMPLS:
      raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {self.impl!r}")
    if self.impl == "matmul" and self.upsample:
      y = upsample_conv3x3(x, w)
    else:
      y = jax.lax.conv_general_dilated(
          upsample2(x) if self.upsample else x, w.astype(self.dtype), (self.stride, self.stride), self.padding,
          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


class Dense(nn.Module):
  features: int
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    w = SpectralKernel((x.shape[-1], self.features), self.spectral_norm, name="w")(train)
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    return x.astype(self.dtype) @ w.astype(self.dtype) + b.astype(self.dtype)


def batch_norm(train: bool, dtype: Dtype, name: str | None = None) -> nn.BatchNorm:
  # momentum 0.9 in Flax's convention is PyTorch's (FastGAN's) default of 0.1.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      scale_init=_bn_scale_init, dtype=dtype, name=name)


def norm(x: Array, y: Array | None, train: bool, dtype: Dtype) -> Array:
  """BatchNorm; with a condition y [B, C] also conditional: scale and shift from y.

  Conditional BatchNorm (as BigGAN's generator): the learned per-channel scale and
  shift of BatchNorm get a condition-dependent part, (1 + gamma(y)) and beta(y),
  from two dense layers initialised at zero, so the condition reaches every layer
  rather than only the input. Call it inside a compact module.
  """
  h = batch_norm(train, dtype)(x)
  if y is None:
    return h
  c = x.shape[-1]
  gamma = nn.Dense(c, use_bias=False, kernel_init=nn.initializers.zeros)(y)
  beta = nn.Dense(c, use_bias=False, kernel_init=nn.initializers.zeros)(y)
  return h * (1.0 + gamma[:, None, None, :]).astype(h.dtype) + beta[:, None, None, :].astype(h.dtype)


def glu(x: Array) -> Array:
  """Gated linear unit over channels: a * sigmoid(b)."""
  a, b = jnp.split(x, 2, axis=-1)
  return a * jax.nn.sigmoid(b)


def upsample2(x: Array) -> Array:
  """Nearest-neighbour upsampling by 2 in H and W."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avgpool2(x: Array) -> Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class NoiseInjection(nn.Module):
  """FastGAN's per-pixel noise with a learned scale (initialised at 0).

  The noise comes from one key per sample, so an image never depends on the
  other images of its batch.
  """

  @nn.compact
  def __call__(self, x: Array, keys: Array) -> Array:
    scale = self.param("scale", nn.initializers.zeros, ())
    h, w = x.shape[1:3]
    noise = jax.vmap(lambda k: jax.random.normal(k, (h, w, 1)))(keys)
    return x + (scale * noise).astype(x.dtype)


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


G_CONDS = ("concat", "cbn")
D_CONDS = ("input", "projection", "both")


class CondNorm(nn.Module):
  """`norm` with a condition, as a named module (G's input block)."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, y: Array, train: bool) -> Array:
    return norm(x, y, train, self.dtype)


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
    return jnp.tanh(out.astype(jnp.float32))


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
  """
  channels: Sequence[int] = (32, 64, 128, 256)
  out_channels: int = 256
  dec_channels: Sequence[int] = (128, 64, 64)
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "xla"
  cond: str = "input"
  coords: bool = False

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


def resolve_conv_impl(conv_impl: str, backend: str | None = None) -> str:
  """config.model.conv_impl -> one of CONV_IMPLS. "auto": "matmul" on CPU, "xla" elsewhere.

  On CPU "matmul" is measured faster (docs/benchmarks.md). On GPUs "xla" keeps
  the convolutions in cuDNN; compare both there with benchmarks/train_speed.py.
  """
  if conv_impl == "auto":
    return "matmul" if (backend or jax.default_backend()) == "cpu" else "xla"
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"config field model.conv_impl must be 'auto', 'xla' or 'matmul', got {conv_impl!r}")
  return conv_impl


def from_config(model_config, cond_dim: int) -> tuple[Generator, Discriminator]:
  """Builds G and D from `config.model`."""
  del cond_dim  # D and G infer it from their inputs; kept for a stable signature.
  conv_impl = resolve_conv_impl(model_config.get("conv_impl", "auto"))
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(model_config.dtype)
  if dtype is None:
    raise ValueError(f"config field model.dtype must be 'float32' or 'bfloat16', got {model_config.dtype!r}")
  if len(model_config.g_channels) != 5:
    raise ValueError("config field model.g_channels needs 5 widths (4, 8, 16, 32, 64 px), "
                     f"got {list(model_config.g_channels)}")
  if len(model_config.d_channels) != 4:
    raise ValueError("config field model.d_channels needs 4 widths (64, 32, 16, 8 px), "
                     f"got {list(model_config.d_channels)}")
  if len(model_config.dec_channels) != 3:
    raise ValueError("config field model.dec_channels needs 3 widths (16, 32, 64 px), "
                     f"got {list(model_config.dec_channels)}")
  g_cond, d_cond, peak = model_config.g_cond, model_config.d_cond, model_config.output_peak
  if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not 0 < peak <= 1:
    raise ValueError(f"config field model.output_peak must be a number in (0, 1], got {peak!r}")
  peak = float(peak)
  if g_cond not in G_CONDS:
    raise ValueError(f"config field model.g_cond must be one of {G_CONDS}, got {g_cond!r}")
  if d_cond not in D_CONDS:
    raise ValueError(f"config field model.d_cond must be one of {D_CONDS}, got {d_cond!r}")
  for field in ("g_channels", "d_channels", "dec_channels"):
    if any(int(c) < 1 for c in model_config[field]):
      raise ValueError(f"config field model.{field} must be positive widths, got {list(model_config[field])}")
  g = Generator(channels=tuple(int(c) for c in model_config.g_channels),
                embed_dim=int(model_config.embed_dim),
                noise_injection=bool(model_config.noise_injection),
                spectral_norm=bool(model_config.spectral_norm),
                sle_slope=float(model_config.sle_slope), dtype=dtype, conv_impl=conv_impl,
                noise_full_res=bool(model_config.noise_full_res),
                cond=g_cond, output_peak=peak)
  d = Discriminator(channels=tuple(int(c) for c in model_config.d_channels),
                    out_channels=int(model_config.d_out_channels),
                    dec_channels=tuple(int(c) for c in model_config.dec_channels),
                    spectral_norm=bool(model_config.spectral_norm), dtype=dtype, conv_impl=conv_impl,
                    cond=d_cond, coords=bool(model_config.d_coords))
  return g, d
