#!/usr/bin/env bash
# The GPU measurements in one run, each step under its own time limit so that a slow step
# cannot take the others' time: the machine, the orthogonal tests on the GPU, the
# Householder program's compile and warm times under XLA flags that turn GPU autotuning
# off, warm timings (benchmarks/orthogonal.py), first-call timings
# (benchmarks/first_call.py) and, when asked for, a Householder block-size sweep and the
# warm timings on the host's CPU. Each step's output goes to $OUT/<step>.txt. The default
# steps' limits add up to 540 s.
#
#   OUT=gpu-results bash benchmarks/gpu.sh
#   STEPS="blocks cpu" OUT=gpu-results bash benchmarks/gpu.sh   # chosen steps only
set -u
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
steps=" ${STEPS:-tests flags warm first nnx} "

step() {  # step NAME SECONDS COMMAND...: runs if NAME (or its prefix before "_") is asked for
  local name=$1 limit=$2
  shift 2
  [[ $steps == *" ${name%%_*} "* ]] || return 0
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
def version(package):
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"
print("python", sys.version.split()[0], *(f"{p} {version(p)}" for p in
      ("jax", "jaxlib", "flax", "torch")), "| devices:", jax.devices(),
      "| auto 4096x4096:", auto_method(4096, 4096))
EOF
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

# Memory is allocated as needed, so that the test workers share the GPU.
XLA_PYTHON_CLIENT_PREALLOCATE=false step tests 70 \
  $py -m pytest -q -p no:cacheprovider -n 8 --timeout 60 \
  tests/test_householder.py tests/test_orthogonal.py \
  -k "haar or every_method or dtypes or blocked or block_size or bit_identical or stack"
# The Householder program took 3-36 s to compile on an H200 (jax 0.11.2), which is why
# `auto` picks QR on GPUs. Suspected: XLA autotunes each of its distinct matrix products.
# Each setting below compiles and times the same program in a fresh process; if one
# compiles in well under a second and runs as fast warm, `auto`'s GPU rule can change.
for setting in default:"" autotune0:--xla_gpu_autotune_level=0 \
    nofusiontuner:--xla_gpu_experimental_enable_fusion_autotuner=false \
    notriton:--xla_gpu_enable_triton_gemm=false; do
  XLA_FLAGS=${setting#*:} step "flags_${setting%%:*}" 35 $py benchmarks/orthogonal.py \
    --cases 1024 stack64 --methods householder --no-jax --no-torch --repeats 5
done
# `auto` is one of these two on every backend: timing it too would compile a program twice.
step warm 150 $py benchmarks/orthogonal.py --methods householder qr --repeats 5
step first 130 $py benchmarks/first_call.py --cases 8 512 2048 8192 stack64 stack16 lstm1024 \
  --impls jaxinit jaxinit:householder jax --repeats 1
step nnx 50 $py benchmarks/first_call.py --cases nnx --impls jaxinit jax --repeats 1
step blocks 90 $py benchmarks/orthogonal.py --cases 4096 stack64 --methods householder \
  --no-jax --no-torch --repeats 5 --block-sizes 32 64 128 256
# Warm timings on the host's CPU, when asked for: block sizes and ratios differ between CPU
# families (AMD/AVX2, Intel/AVX-512).
JAX_PLATFORMS=cpu step cpu 240 $py benchmarks/orthogonal.py --cases 1024 2048 tall stack64 \
  stack16 lstm --methods householder --repeats 5
