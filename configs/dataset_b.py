"""Dataset 'B' of the paper: cortex only; 3-dim condition (pattern)."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.levels = ("COR",)
  return config
