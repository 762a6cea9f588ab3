"""Conditional FastGAN for brain perfusion SPECT slices in JAX/Flax (Werner et al., Sci Rep 2022)."""

__version__ = "0.1.0"
