"""Where the test suite's time goes: per test, wall time, XLA compile time and tracing.

    SUITE_PROFILE=/tmp/suite JAX_COMPILATION_CACHE_DIR=/tmp/suite/cache PYTHONPATH=benchmarks \\
        python -m pytest -q -n auto --dist loadfile -p suite_profile
    python benchmarks/suite_profile.py /tmp/suite

As a pytest plugin (`-p suite_profile`) it appends one JSON line per test to
$SUITE_PROFILE/probe_<worker>.jsonl: the test's wall seconds and the seconds JAX spent,
inside it, compiling (XLA backend compile) and tracing or lowering (jaxpr trace, MLIR
lowering), from jax.monitoring's duration events. A fresh JAX_COMPILATION_CACHE_DIR
gives what a clean clone's CI sees; the suite's own cache folder gives a warm rerun.
Run as a script it prints the totals, the files by wall time and the slowest tests.
Tests that start processes (launch.py, multi-host) show only their wall time: their
compiles happen in the children.
"""

import collections
import glob
import json
import os
import sys
import time

import pytest

_COMPILE = "/jax/core/compile/backend_compile_duration"
_TRACE = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration")
_seconds = {"compile": 0.0, "trace": 0.0}


def _listen(event: str, secs: float, **kwargs) -> None:
  if event == _COMPILE:
    _seconds["compile"] += secs
  elif event in _TRACE:
    _seconds["trace"] += secs


def pytest_configure(config):
  import jax
  jax.monitoring.register_event_duration_secs_listener(_listen)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  c0, t0, w0 = _seconds["compile"], _seconds["trace"], time.time()
  yield
  folder = os.environ.get("SUITE_PROFILE", ".")
  os.makedirs(folder, exist_ok=True)
  worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
  with open(os.path.join(folder, f"probe_{worker}.jsonl"), "a") as f:
    f.write(json.dumps({"test": item.nodeid, "wall": time.time() - w0,
                        "compile": _seconds["compile"] - c0, "trace": _seconds["trace"] - t0}) + "\n")


def summary(folder: str, top: int = 20) -> None:
  rows = [json.loads(line) for path in glob.glob(os.path.join(folder, "probe_*.jsonl")) for line in open(path)]
  if not rows:
    sys.exit(f"no probe_*.jsonl in {folder}: run pytest with -p suite_profile first")
  wall = sum(r["wall"] for r in rows)
  comp = sum(r["compile"] for r in rows)
  trace = sum(r["trace"] for r in rows)
  print(f"{len(rows)} tests, {wall:.0f} s of test time over all workers: compile {comp:.0f} s "
        f"({comp / wall:.0%}), trace and lowering {trace:.0f} s ({trace / wall:.0%})\n")
  files = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
  for r in rows:
    f = files[r["test"].split("::")[0]]
    f[0], f[1], f[2] = f[0] + r["wall"], f[1] + r["compile"], f[2] + r["trace"]
  print("| file | wall s | compile s | trace s |\n| --- | --- | --- | --- |")
  for name, (w, c, t) in sorted(files.items(), key=lambda x: -x[1][0]):
    print(f"| {name} | {w:.0f} | {c:.0f} | {t:.0f} |")
  print("\n| slowest tests | wall s | compile s | trace s |\n| --- | --- | --- | --- |")
  for r in sorted(rows, key=lambda r: -r["wall"])[:top]:
    print(f"| {r['test']} | {r['wall']:.0f} | {r['compile']:.0f} | {r['trace']:.0f} |")


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  summary(sys.argv[1])
