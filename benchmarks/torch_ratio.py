"""Training steps per second against the PyTorch reference, same widths, batch and cores.

  python benchmarks/torch_ratio.py --torch_python=/path/to/venv/bin/python
      [--torch_ref=../shared/torch_ref] [--batch=4] [--threads=2] [--repeats=3]
      [--host_devices=1]

The reference (`bench.py` of the PyTorch port, eager, `--threads` intra-op threads) trains
the paper's step: G, D with both decoders, hinge losses, Adam, the paper's
augmentation. Ours runs the same step, `configs/dataset_a.py:cpu_paper` (the paper's
settings at the CPU schedule's widths, which are passed to the reference too), through
benchmarks/epoch_time.py: whole epochs of the embedded default as training runs them.
`--host_devices=2` splits our CPU into two devices of one thread each, the batch split
over them; otherwise XLA's default threads. Both run one after the other on the
cores this process may use (run it under taskset to choose them); prints the medians
and the ratio as one JSON line.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def last_json(text: str) -> dict:
  lines = [l for l in text.splitlines() if l.startswith("{")]
  if not lines:
    raise SystemExit(f"no JSON line in the output:\n{text[-2000:]}")
  return json.loads(lines[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--torch_python", required=True, help="a Python with torch installed")
  p.add_argument("--torch_ref", default=os.path.join(common.ROOT, "..", "shared", "torch_ref"))
  p.add_argument("--config", default="configs/dataset_a.py:cpu_paper")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--host_devices", type=int, default=1)
  args = p.parse_args()
  config = common.load_config(args.config)
  m = config.model
  join = lambda xs: ",".join(str(int(x)) for x in xs)
  bench = os.path.join(os.path.abspath(args.torch_ref), "bench.py")
  if not os.path.exists(bench):
    raise SystemExit(f"{bench} not found: give the PyTorch reference's folder with --torch_ref")
  if m.d_out_channels != m.d_channels[-1]:
    raise SystemExit("the reference's D output block is as wide as its last block; this config's "
                     f"model.d_out_channels ({m.d_out_channels}) differs")
  torch_cmd = [args.torch_python, bench, "--steps", "50", "--warmup", "5", "--batch", str(args.batch),
               "--threads", str(args.threads), "--repeat", str(args.repeats),
               "--gw", join(m.g_channels), "--dw", join(m.d_channels), "--decw", join(m.dec_channels)]
  torch = last_json(subprocess.run(torch_cmd, capture_output=True, text=True, check=True).stdout)
  ours_cmd = [sys.executable, os.path.join(HERE, "epoch_time.py"), f"--config={args.config}",
              f"--epochs={args.repeats}", f"--set=batch_size={args.batch}",
              f"--host_devices={args.host_devices}",
              f"--threads={1 if args.host_devices > 1 else 0}"]
  ours = last_json(subprocess.run(ours_cmd, capture_output=True, text=True, check=True).stdout)
  ours_sps = ours["steps_per_epoch"] / ours["epoch_s_median"]
  print(json.dumps({
      "config": args.config, "batch": args.batch, "cpus_usable": len(os.sched_getaffinity(0)),
      "torch": {"steps_per_s": round(torch["steps_per_s"], 2),
                "runs": [round(x, 2) for x in torch["steps_per_s_all"]],
                "threads": torch["threads"], "version": torch["torch"]},
      "ours": {"steps_per_s": round(ours_sps, 2), "epoch_s_runs": ours["epoch_s_runs"],
               "host_devices": args.host_devices, "threads": ours["threads"]},
      "ratio_ours_over_torch": round(ours_sps / torch["steps_per_s"], 2)}))


if __name__ == "__main__":
  main()
