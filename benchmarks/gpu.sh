#!/usr/bin/env bash
# The GPU measurements in one run, each step under its own time limit so that a slow step
# cannot take the others' time: the machine, the orthogonal tests on the GPU, warm
# timings (benchmarks/orthogonal.py), a Householder block-size sweep and first-call
# timings (benchmarks/first_call.py). Each step's output goes to $OUT/<step>.txt.
#
#   OUT=gpu-results bash benchmarks/gpu.sh
set -u
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name ($limit s at most): $*"
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "   exit $?"
  tail -n 40 "$out/$name.txt"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  lscpu | grep -m1 'Model name'
  echo "cores: $(nproc)"
  $py - <<'EOF'
import importlib.metadata as md, sys
import jax
from jaxinit.orthogonal import auto_method
print("python", sys.version.split()[0], *(f"{p} {md.version(p)}" for p in
      ("jax", "jaxlib", "flax", "torch")), "| devices:", jax.devices(),
      "| auto 4096x4096:", auto_method(4096, 4096))
EOF
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

# Memory is allocated as needed, so that the test workers share the GPU.
XLA_PYTHON_CLIENT_PREALLOCATE=false step tests 80 \
  $py -m pytest -q -p no:cacheprovider -n 8 --timeout 60 \
  tests/test_householder.py tests/test_orthogonal.py \
  -k "haar or every_method or dtypes or blocked or block_size or bit_identical or stack"
# `auto` is one of these two on every backend: timing it too would compile a program twice.
step warm 180 $py benchmarks/orthogonal.py --methods householder qr --repeats 5
step blocks 60 $py benchmarks/orthogonal.py --cases 4096 stack64 --methods householder \
  --no-jax --no-torch --repeats 5 --block-sizes 32 64 128 256
step first 170 $py benchmarks/first_call.py --cases 8 512 2048 8192 stack64 stack16 lstm1024 \
  --impls jaxinit jaxinit:householder jax --repeats 1
step nnx 80 $py benchmarks/first_call.py --cases nnx --impls jaxinit jax --repeats 1
