"""Disk cost and save time of one epoch's checkpoints at the default widths.

  python benchmarks/checkpoint_cost.py [--config=configs/dataset_a.py] [--repeats=5]

Saves the sampler checkpoint (kept for every epoch) and the full training state
(the last `checkpoint.keep_train_states` kept) `--repeats` times and reports the
bytes on disk and the median time the training loop is held up by a save (the
asynchronous write goes on beside training) and the time until it is on disk.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (puts the repository on sys.path)

import jax


def du(path):
  return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/dataset_a.py")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args()
  from spect_fastgan_jax import checkpoints, conditions, train_state
  config = common.load_config(args.config)
  g, _, state = common.model_and_state(config)
  # A trained state has no zero Adam moments, which would compress to nothing:
  # fill every float leaf with random values so the sizes are those of a real run.
  leaves, tree = jax.tree_util.tree_flatten(state)
  keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
  state = jax.tree_util.tree_unflatten(tree, [
      jax.random.normal(k, x.shape, x.dtype) if jax.numpy.issubdtype(x.dtype, jax.numpy.floating) else x
      for k, x in zip(keys, leaves)])
  sampler = train_state.sampler_variables(
      state, config, g, conditions.encode(config.data.levels, *zip(*conditions.all_conditions(config.data.levels))))
  with tempfile.TemporaryDirectory() as tmp:
    ck = checkpoints.RunCheckpoints(tmp, keep_train_states=args.repeats)
    blocking, total = [], []
    for epoch in range(1, args.repeats + 1):
      t = time.perf_counter()
      ck.save(epoch, state, sampler)
      blocking.append(time.perf_counter() - t)
      ck.wait()
      total.append(time.perf_counter() - t)
    ck.close()
    sampler_bytes = du(os.path.join(tmp, "checkpoints", "sampler", "1"))
    train_bytes = du(os.path.join(tmp, "checkpoints", "train", "1"))
  out = {
      "config": args.config, "backend": jax.default_backend(),
      "sampler_checkpoint_MB": round(sampler_bytes / 1e6, 2),
      "train_state_checkpoint_MB": round(train_bytes / 1e6, 2),
      "disk_per_1000_epochs_GB": round((1000 * sampler_bytes
                                        + config.checkpoint.keep_train_states * train_bytes) / 1e9, 2),
      "save_blocking_s_median": round(statistics.median(blocking), 3),
      "save_until_on_disk_s_median": round(statistics.median(total), 3),
  }
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
