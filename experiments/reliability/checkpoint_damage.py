"""What a damaged sampler checkpoint does: each of its files deleted, then truncated to half.

  python experiments/reliability/checkpoint_damage.py [--config=configs/dataset_a.py:cpu]

Writes two sampler checkpoints of random generator weights (what training writes for
an epoch, without training) into a temporary folder. Then, for every file of epoch 1,
once deleted and once truncated to half its size (each case on a fresh copy), restores
epoch 1 and sorts the outcome:
  named      the restore fails with the error that names the epoch (CheckpointError);
  same       the restore gives the very same values (a file orbax does not need);
  different  the restore succeeds with other values (silent damage);
  other      any other exception.
Epoch 2 is restored in every case too: it must load unharmed. Prints one line per case
and the counts: docs/reliability.md, "A damaged checkpoint folder".
"""

import argparse
import collections
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import load_config  # noqa: E402
from conftest import save_random_sampler_checkpoints  # noqa: E402  (what training writes, untrained)
from spect_fastgan_jax import checkpoints, conditions, models  # noqa: E402
from spect_fastgan_jax.errors import CheckpointError  # noqa: E402


def same(a, b) -> bool:
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/dataset_a.py:cpu")
  args = p.parse_args()
  config = load_config(args.config)
  with tempfile.TemporaryDirectory() as tmp:
    clean = os.path.join(tmp, "clean")
    save_random_sampler_checkpoints(clean, config, epochs=(1, 2))
    g, _ = models.from_config(config.model)
    c = conditions.condition_dim(config.data.levels, conditions.side_conditioned(config.data))
    like = jax.eval_shape(lambda: g.init({"params": jax.random.PRNGKey(0)}, jax.numpy.zeros((1, config.model.z_dim)),
                                         jax.numpy.zeros((1, c)), jax.random.split(jax.random.PRNGKey(0), 1),
                                         train=False))
    intact = {e: checkpoints.restore_sampler(clean, e, like) for e in (1, 2)}
    epoch_dir = checkpoints.checkpoint_dir(clean, "sampler")
    files = sorted(os.path.relpath(os.path.join(root, f), os.path.join(epoch_dir, "1"))
                   for root, _, names in os.walk(os.path.join(epoch_dir, "1")) for f in names)
    counts = collections.Counter()
    for name in files:
      for damage in ("deleted", "truncated"):
        case = os.path.join(tmp, "case")
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(clean, case)
        path = os.path.join(checkpoints.checkpoint_dir(case, "sampler"), "1", name)
        if damage == "deleted":
          os.remove(path)
        elif os.path.getsize(path) < 2:
          continue  # half of 0 or 1 byte is the file as it was: no case
        else:
          with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        detail = ""
        try:
          outcome = "same" if same(checkpoints.restore_sampler(case, 1, like), intact[1]) else "different"
        except CheckpointError as e:
          outcome = "named" if "epoch 1" in str(e) else "other"
        except Exception as e:  # noqa: BLE001  (sorted, not hidden: printed below)
          outcome, detail = "other", f" ({type(e).__name__})"
        try:
          other_intact = same(checkpoints.restore_sampler(case, 2, like), intact[2])
        except Exception:  # noqa: BLE001  (counted below)
          other_intact = False
        if not other_intact:
          outcome += ", EPOCH 2 HARMED"
        counts[outcome] += 1
        print(f"{damage:9s} {name}: {outcome}{detail}")
    print(f"{len(files)} files, {sum(counts.values())} cases: " +
          ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
  main()
