"""Dataset 'A' of the paper: cerebellum, basal ganglia and cortex; 6-dim condition."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.levels = ("CER", "BG", "COR")
  return config
