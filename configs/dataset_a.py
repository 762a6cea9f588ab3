"""Dataset 'A' of the paper: cerebellum, basal ganglia and cortex; 6-dim condition."""

from configs import default


def get_config(variant: str | None = None):
  """variant: None/'' or 'paper' (the paper's settings), 'recipe', 'cpu' or
  'cpu_paper' (configs/default.py VARIANTS), given as --config=configs/dataset_a.py:cpu."""
  config = default.get_config()
  config.data.levels = ("CER", "BG", "COR")
  return default.with_variant(config, variant)
