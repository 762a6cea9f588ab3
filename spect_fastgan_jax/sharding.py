"""The device mesh a run's batches are split over, and putting arrays on it.

Data parallel only: the state and the training set are replicated on every device,
each batch is split over the mesh's 'data' axis, and XLA adds the gradient
all-reduce. In a job of several processes (docs/multihost.md) the mesh spans every
device of every process.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from spect_fastgan_jax.errors import ConfigError


def make_mesh(num_devices: int, batch_size: int, log: Callable[[str], None] = lambda m: None):
  """A 1-D device mesh with axis 'data' over which each batch is split.

  num_devices: config field `num_devices`; -1 takes the most visible devices
  that divide the batch (and says so if that is fewer than are visible). In a
  job of several processes the mesh spans every device of every process, so the
  batch must split evenly over all of them. Raises ConfigError naming the field.
  """
  if isinstance(num_devices, bool) or not isinstance(num_devices, int) or not (
      num_devices == -1 or num_devices >= 1):
    raise ConfigError(f"config field num_devices must be -1 (all devices that fit) or >= 1, "
                      f"got {num_devices!r}")
  devices = jax.devices()
  if jax.process_count() > 1:
    if num_devices not in (-1, len(devices)) or batch_size % len(devices):
      raise ConfigError(
          f"config field batch_size ({batch_size}) must split evenly over all {len(devices)} devices of "
          f"the {jax.process_count()} processes ({jax.local_device_count()} in this one)"
          + (f", and num_devices ({num_devices}) must be -1 or {len(devices)}" if num_devices != -1 else ""))
    return jax.sharding.Mesh(np.array(devices), ("data",))
  if num_devices == -1:
    n = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
    if n < len(devices):
      log(f"using {n} of {len(devices)} devices: batch_size {batch_size} splits evenly over {n}")
  else:
    n = num_devices
    if n > len(devices):
      raise ConfigError(f"config field num_devices is {n} but only {len(devices)} device(s) are visible")
    if batch_size % n:
      raise ConfigError(f"config field batch_size ({batch_size}) must split evenly over "
                        f"num_devices ({n}) devices")
  return jax.sharding.Mesh(np.array(devices[:n]), ("data",))


def replicate(tree, mesh):
  """Puts every array of `tree` whole on every device of `mesh`.

  Across processes each process puts its own copy on its own devices: every
  process holds the same values (the same data, seed and checkpoint).
  """
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda i, x=np.asarray(x): x[i]),
      tree)


def batch_splitter(mesh) -> Callable:
  """x -> x constrained to be split along its first axis over the mesh's 'data' axis
  (the identity on one device)."""
  if mesh is None or mesh.size == 1:
    return lambda x: x
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  return lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)


def any_process(flag: bool) -> bool:
  """`flag` of any process, on every process: all processes act on it together."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.array(flag))))
