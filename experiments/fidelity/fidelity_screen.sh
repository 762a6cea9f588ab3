#!/usr/bin/env bash
# Screens one fidelity candidate the way docs/fidelity.md's ablation table was made:
# a short run at the CPU schedule's reduced widths on the embedded default set, on one
# core and one thread, then --mode=select every 5 epochs; prints the select table.
#
#   experiments/fidelity/fidelity_screen.sh NAME EPOCHS CORE CONFIG [--config.FIELD=VALUE ...]
#   e.g. experiments/fidelity/fidelity_screen.sh paper 30 0 configs/dataset_a.py:cpu_paper
#        experiments/fidelity/fidelity_screen.sh recipe 30 1 configs/dataset_a.py:cpu
#
# The run goes to runs/screen/NAME (log: runs/screen/NAME.log). Two screens fit the
# 2-core machine side by side (CORE 0 and 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; epochs=$2; core=$3; config=$4; shift 4
out=runs/screen
mkdir -p "$out"
export JAX_PLATFORMS=cpu XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
taskset -c "$core" python launch.py --config="$config" --workdir="$out/$name" --config.num_epochs="$epochs" \
  --config.log.progress=False --config.checkpoint.keep_train_states=1 "$@" > "$out/$name.log" 2>&1
taskset -c "$core" python launch.py --config="$config" --mode=select --workdir="$out/$name" --select_every=5 "$@" \
  >> "$out/$name.log" 2>&1
cat "$(ls -td "$out/$name"/evaluation/select_*/ | head -1)/select.md"
