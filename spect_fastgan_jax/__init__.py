"""Conditional FastGAN for brain perfusion SPECT slices in JAX/Flax (Werner et al., Sci Rep 2022).

The public Python API (docs/api.md):

    from spect_fastgan_jax import Sampler, write_nifti
    images = Sampler.load("runs/dataset_a_cpu").generate("BG", "unilateral", n=16)
"""

__version__ = "0.1.0"

__all__ = ["Sampler", "write_nifti"]

# Imported on first use, so that `import spect_fastgan_jax` and its light modules
# (errors, conditions) do not pull in JAX.
_LAZY = {"Sampler": "spect_fastgan_jax.api", "write_nifti": "spect_fastgan_jax.api"}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY))
