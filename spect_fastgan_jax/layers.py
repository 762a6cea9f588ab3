"""The building blocks of the networks: spectrally normalised convolutions and dense
layers, (conditional) BatchNorm, GLU, resampling and FastGAN's noise injection.

Layout is NHWC throughout. Mutable state lives in one collection, 'batch_stats':
BatchNorm running means and variances, and the power-iteration vectors `u` of
spectral normalisation. Both are updated only in training mode.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from spect_fastgan_jax.errors import ConfigError

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


class CondNorm(nn.Module):
  """`norm` with a condition, as a named module (G's input block)."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, y: Array, train: bool) -> Array:
    return norm(x, y, train, self.dtype)


def resolve_conv_impl(conv_impl: str, backend: str | None = None) -> str:
  """config.model.conv_impl -> one of CONV_IMPLS. "auto": "matmul" on CPU, "xla" elsewhere.

  On CPU "matmul" is measured faster (docs/benchmarks.md). On GPUs "xla" keeps
  the convolutions in cuDNN; compare both there with benchmarks/train_speed.py.
  """
  if conv_impl == "auto":
    return "matmul" if (backend or jax.default_backend()) == "cpu" else "xla"
  if conv_impl not in CONV_IMPLS:
    raise ConfigError(f"config field model.conv_impl must be 'auto', 'xla' or 'matmul', got {conv_impl!r}")
  return conv_impl
