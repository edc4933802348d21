#!/usr/bin/env bash
# The GPU check (make gpu-check): for a machine with a CUDA GPU whose python3 already has gpunet's
# dependencies (numpy, click, pytest, cupy; torch and jax for the peers). Installs nothing, runs gpunet
# from this source tree, and finishes within about 5 minutes. Everything it prints also goes under
# $OUT (default bench/results/gpu-check-<date>): the GPU tests, `gpunet check` on every workload
# (CPU vs CUDA, and each against a float64 reference), and the benchmark with the peers on CUDA; with
# scikit-learn (from .gpu-wheels/, see the Makefile), gpunet.sklearn's GPU tests and its benchmark too, and the
# stacks of many models (stack_bench.py, search_bench.py) on CUDA.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-check-$(date +%F)}
PY=${PYTHON:-python3}
export PYTHONPATH=.
mkdir -p "$OUT"
if [ -d .gpu-wheels ]; then  # scikit-learn and scipy for gpunet.sklearn (make gpu-wheels): unpacked, not installed
    site=$(mktemp -d)
    for w in .gpu-wheels/*.whl; do "$PY" -m zipfile -e "$w" "$site"; done
    export PYTHONPATH=.:$site
fi
status=0
step() {  # step NAME COMMAND...: run, keep its output in $OUT/NAME.txt, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "== $name failed with exit code $rc"; status=1; }
}
step nvidia-smi nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step pytest "$PY" -m pytest -q -p no:cacheprovider tests
for w in seed medium large mnist; do
    step "check-$w" "$PY" -m gpunet check --workload "$w" --backends cpu,cuda --reference
done
step check-minibatch-adam "$PY" -m gpunet check --backends cpu,cuda --reference --n 1000 --batch-size 64 \
    --optimizer adam --lr 1e-3 --loss mse --init he --epochs 20
for a in relu tanh sigmoid; do
    step "check-ce-$a" "$PY" -m gpunet check --backends cpu,cuda --reference --loss ce --d-out 5 --n 2000 \
        --hidden 64,32 --activation "$a" --weight-decay 1e-3 --val-split 0.2 --batch-size 128 \
        --optimizer momentum --lr 0.05 --init he --epochs 30
    step "gradcheck-ce-$a" "$PY" -m gpunet gradcheck --backend cuda --loss ce --d-out 3 --activation "$a" \
        --weight-decay 0.1
done
# TF32 rounds the products' inputs to 10 bits: this step shows how far that moves large from the CPU
step check-large-tf32 "$PY" -m gpunet check --workload large --backends cpu,cuda --tf32
if "$PY" -c "import sklearn" 2>/dev/null; then
    step sklearn-bench "$PY" bench/sklearn_bench.py --backend cuda --runs 3
fi
step bench "$PY" bench/run.py --backend cpu,cuda --peers-on cuda --repeats 5 --out "$OUT"
if "$PY" -c "import sklearn" 2>/dev/null; then  # last: about 2 more minutes, whose results come back if cut short
    # many models as one stack (issue 19's GPU targets: 1000 seed-sized models >= 30x one by one; the searches)
    step stack-bench "$PY" bench/stack_bench.py --backend cuda --dtype float32 --workload seeds:1000 \
        --workload tutorial:100 --workload digits:20 --runs 1
    step search-bench "$PY" bench/search_bench.py --backend cuda --skip-sklearn-mlp --runs 1
fi
echo "== results in $OUT"
exit $status
