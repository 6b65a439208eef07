#!/usr/bin/env bash
# The whole study, in order: Part 1, Parts 2–3, then Part 4 and the report.
#
#   pip install -r requirements.txt && bash run_all.sh
#   bash run_all.sh --quick                       # a smoke test: every step on a sliver of MNIST, into results-quick/
#   bash run_all.sh --data-dir ../shared/data --out results --device cpu
#   bash run_all.sh --latent-dim 2 --out results-z2  # every step with a 2-D z
#
# Each step skips work whose outputs are complete and match the settings, so a rerun after an interruption
# picks up where it stopped; --force redoes everything.
set -euo pipefail
export MPLBACKEND=Agg
cd "$(dirname "$0")"

usage="usage: bash run_all.sh [--quick] [--force] [--data-dir DIR] [--out DIR] [--device auto|cpu|cuda|mps] [--seed N] [--latent-dim K]"
forward=()
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) forward+=("$1"); quick=1; shift ;;
    --force) forward+=("$1"); shift ;;
    --data-dir|--out|--device|--seed|--latent-dim)
      [ $# -ge 2 ] || { echo "run_all.sh: $1 needs a value; $usage" >&2; exit 2; }
      [ "$1" = --out ] && out=$2
      forward+=("$1" "$2"); shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "run_all.sh: unknown option $1; $usage" >&2; exit 2 ;;
  esac
done

[ -n "$out" ] || { [ -n "${quick:-}" ] && out=results-quick || out=results; }
python=${PYTHON:-python3}
step() {
  local title=$1 script=$2 start=$SECONDS
  # ${a[@]+"${a[@]}"}: an empty array under set -u, which the bash 3.2 of macOS counts as unset otherwise
  echo "=== $title: $python $script ${forward[*]+"${forward[*]}"}"
  "$python" "$script" ${forward[@]+"${forward[@]}"} || {
    status=$?
    if [ "$status" = 130 ]; then
      echo "run_all.sh: interrupted in $script; run the same command again to resume" >&2
    else
      echo "run_all.sh: $script failed (exit $status)" >&2
    fi
    exit "$status"
  }
  echo "=== $title: done in $((SECONDS - start))s"
  echo
}

step "Part 1: three MLP VAEs" vae.py
step "Parts 2-3: conv VAE and the saved models" conv_vae.py
step "Part 4: digit classifier" classifier.py
step "Part 4: t-SNE of the latent space" tsne.py
step "Part 4: interpolation" interpolate.py
step "Report" report.py
echo "all steps done in ${SECONDS}s; read $out/REPORT.md (or REPORT.pdf)"
