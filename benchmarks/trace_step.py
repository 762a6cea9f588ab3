"""Where a training step's time goes, op by op: a JAX profiler trace of the compiled step.

  python benchmarks/trace_step.py [--config=configs/dataset_a.py] [--conv_impl=auto] [--calls=10]

Runs the jitted train step `--calls` times under `jax.profiler.trace`, reads the
trace's per-op durations and maps each op to the layer it came from (XLA's
op metadata). Prints the step time, the op time by kind (library matmul and
convolution calls, XLA's own convolutions, transposes, concatenates, other
fusions) and by layer, forward ('F') and backward ('B'). Op times of ops that ran
side by side on the two cores add up, so their sum exceeds the step time.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (puts the repository on sys.path)

import jax

# Op-name prefixes of the trace, from the longest, and the kind they are shown as.
_KINDS = (("ynn_fusion", "library matmul/convolution (YNNPACK)"),
          ("convolution", "XLA convolution"),
          ("transpose", "transpose"), ("concatenate", "concatenate"),
          ("bitcast_concatenate", "concatenate"), ("dot", "XLA dot"))


def kind_of(op: str) -> str:
  name = op.rstrip("0123456789").rstrip(".")
  for prefix, kind in sorted(_KINDS, key=lambda k: -len(k[0])):
    if name.startswith(prefix):
      return kind
  return "other fusions (elementwise, reductions, copies)"


def layer_of(op_name: str) -> str:
  """'jit(train_step)/transpose(jvp(Discriminator))/dec_global/UpBlock_2/Conv_0/...' -> 'B Discriminator/dec_global/UpBlock_2'."""
  path = op_name.replace("jit(train_step)/", "")
  backward = "transpose(" in path
  path = re.sub(r"transpose\(|jvp\(|\)", "", path)
  return ("B " if backward else "F ") + "/".join(path.split("/")[:3])


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/dataset_a.py")
  p.add_argument("--conv_impl", default="", help="override config.model.conv_impl")
  p.add_argument("--calls", type=int, default=10)
  p.add_argument("--top", type=int, default=25, help="layers to list")
  args = p.parse_args()
  from spect_fastgan_jax import input_pipeline, layers, models, train
  from spect_fastgan_jax import step as step_lib
  config = common.load_config(args.config)
  if args.conv_impl:
    config.model.conv_impl = args.conv_impl
  g, d, state = common.model_and_state(config)
  key = jax.random.PRNGKey(0)
  real3, y, flip, spread = common.step_inputs(config, key)
  batch = input_pipeline.Batch(real3=real3, cond=y, flip_ok=flip, spread=spread)
  step = jax.jit(step_lib.make_train_step(config, g, d))
  hlo = step.lower(state, batch, key).compile().as_text()
  jax.block_until_ready(step(state, batch, key))
  t = time.perf_counter()
  for _ in range(args.calls):
    out = step(state, batch, key)
  jax.block_until_ready(out)
  step_ms = (time.perf_counter() - t) / args.calls * 1e3

  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      for _ in range(args.calls):
        out = step(state, batch, key)
      jax.block_until_ready(out)
    files = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
    if not files:
      sys.exit("the profiler wrote no trace; is this jax build without the profiler?")
    with gzip.open(files[0]) as f:
      events = json.load(f)["traceEvents"]

  meta = {}
  for line in hlo.split("\n"):
    m = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]+)\"", line)
    if m:
      meta[m.group(1)] = m.group(2)
  ops = collections.Counter()
  for e in events:
    name = e.get("name", "")
    if e.get("ph") == "X" and re.match(r"^[a-z][\w\-]*(\.\d+)?$", name):
      ops[name] += e["dur"] / 1e3 / args.calls  # us -> ms per step
  by_kind, by_layer = collections.Counter(), collections.Counter()
  for op, ms in ops.items():
    by_kind[kind_of(op)] += ms
    by_layer[layer_of(meta[op]) if op in meta else "(no layer: layout copies)"] += ms
  print(json.dumps({
      "config": args.config, "conv_impl": layers.resolve_conv_impl(config.model.conv_impl),
      "step_ms": round(step_ms, 1), "op_ms_total": round(sum(ops.values()), 1),
      "op_ms_by_kind": {k: round(v, 1) for k, v in by_kind.most_common()},
      "op_ms_by_layer": {k: round(v, 1) for k, v in by_layer.most_common(args.top)},
  }, indent=2))


if __name__ == "__main__":
  main()
