"""Output folders that never silently replace earlier results, and strict JSON."""

from __future__ import annotations

import json
import math

# Shared with sampling: one way to publish an output folder.
from spect_fastgan_jax.outputs import new_folder, refuse_existing  # noqa: F401


def finite(x):
  """NaN and Inf -> None, recursively, so the JSON is strict."""
  if isinstance(x, dict):
    return {k: finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [finite(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def write_json(obj, path: str) -> None:
  with open(path, "w") as f:
    json.dump(finite(obj), f, indent=1, default=list)
