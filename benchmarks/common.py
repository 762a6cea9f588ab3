"""What the benchmark scripts share: the repository on sys.path and config loading."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def load_config(path: str):
  """The ConfigDict of a config file (configs/*.py), as launch.py would load it."""
  spec = importlib.util.spec_from_file_location("benchmark_config", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
