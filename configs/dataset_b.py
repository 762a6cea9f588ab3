"""Dataset 'B' of the paper: cortex only; 3-dim condition (pattern)."""

from configs import default


def get_config(variant: str | None = None):
  """variant: None/'' or 'paper' (the paper's settings), 'recipe', 'cpu' or
  'cpu_paper' (configs/default.py VARIANTS), given as --config=configs/dataset_b.py:cpu."""
  config = default.get_config()
  config.data.levels = ("COR",)
  return default.with_variant(config, variant)
