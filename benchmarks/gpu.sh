#!/usr/bin/env bash
# One prepared GPU check (issues 22 and 26): the CUDA tests, both penalty benchmarks with and
# without torch.compile, the stack benchmark, and the default study on --device cuda.
# Meant for the device tool's `run` (a bare machine with torch+CUDA, Python 3.12, no network):
# the lab's dependencies that machine lacks travel as wheels in .whl/ (ignored by git), fetched
# here beforehand with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl optuna==5.1.0 alembic colorlog kornia==0.9.0 kornia_rs Mako platformdirs \
#     SQLAlchemy safetensors rich
# and the call names `.whl` in `carry`. Logs go to $OUT (at most 8 files come back).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv >"$OUT/device.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())" >>"$OUT/device.txt" 2>&1

timeout 150 python3 -m pytest -q -x -p no:cacheprovider \
  tests/regularization/test_devices.py tests/stochastic/test_devices.py \
  $(ls tests/lab/test_device.py 2>/dev/null) >"$OUT/cuda_tests.txt" 2>&1

{
  timeout 120 python3 benchmarks/bench_penalty_overhead.py --device cuda
  timeout 120 python3 benchmarks/bench_penalty_overhead.py --device cuda --compile --model mlp
} >"$OUT/penalty_overhead.txt" 2>&1

timeout 90 python3 benchmarks/bench_model_stack.py --device cuda --ks 1 4 16 64 \
  >"$OUT/model_stack.txt" 2>&1

( time timeout 120 python3 -m reglab run --device cuda --out /tmp/gpu-run ) \
  >"$OUT/default_study.txt" 2>&1
tail -n 5 "$OUT"/*.txt
