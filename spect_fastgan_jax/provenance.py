"""What produced an output: package versions, git commit, platform."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain",
             "nibabel", "pydicom", "nilearn", "scipy")


def short_hash(plain) -> str:
  """16 hex digits of SHA-256 over `plain` (JSON-able: dicts, lists, numbers, text;
  tuples count as lists) with its keys sorted: equal for equal content, whatever the
  key order. Names a config (workdir.config_hash) and a simulated set's parameters
  (data.source.simulation_key)."""
  return hashlib.sha256(json.dumps(plain, sort_keys=True, default=list).encode()).hexdigest()[:16]


def git_commit() -> str:
  """Commit of the checkout this package runs from ('unknown' outside git)."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                         text=True, timeout=5, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out + ("+dirty" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def describe() -> dict:
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  import jax  # imported late: provenance is also read by tools that never touch JAX
  return {
      "git_commit": git_commit(),
      "python": platform.python_version(),
      "platform": platform.platform(),
      "jax_backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      # On the CPU the thread setting changes how XLA sums, and a trained classifier's
      # figures move with it (docs/evaluation.md): record it with every output.
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
      "packages": versions,
  }
