#!/usr/bin/env bash
# The checks that make the amx level the default (docs/kernels.md, "AMX"), for a machine with AMX: the AMX kernel
# tests, the layer/operator/kernel suites at MOEFUSE_MAX_ISA=amx in both numerics tiers, the kernels' speed against
# the AVX-512 ones (one thread), and the layer with and without AMX in one run. Needs a release build with the
# benchmarks (`cmake --preset release -DMOEFUSE_BUILD_BENCH=ON && cmake --build --preset release`); writes its
# output to stdout and to the folder given (default: amx-check/).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-amx-check}
mkdir -p "$out"
bin=build/release
"$bin/tools/moefuse/moefuse" info | grep -E "^cpu|amx|isa" | tee "$out/info.txt"
if ! grep -q "^amx level: *available" "$out/info.txt"; then
  echo "amx-check: this machine has no amx level (see 'amx level' above)"; exit 1
fi
# The level is opt-in (kDefaultIsaCap): the tests and gemm_bench run the AMX kernels only when asked.
export MOEFUSE_MAX_ISA=amx
# 1. The kernels on the tiles, and the model they were written against.
"$bin/tests/moefuse_tests" --gtest_filter='GemmAmx*:MachineProbe*:Cpu*' 2>&1 | tee "$out/kernel-tests.txt" |
  grep -E "^\[  (FAILED|PASSED) |\[ native \]|Failure" 
# 2. Everything that picks kernels by level, at amx: portable (bitwise suites) and native.
for tier in portable native; do
  MOEFUSE_NUMERICS=$tier "$bin/tests/moefuse_tests" \
    --gtest_filter="$([ $tier = native ] && echo '*Numerics*:GemmAmx*:CliTest.VerifyInTheNativeTier*:CliTest.RunSays*' || echo '*')" \
    > "$out/suite-$tier.txt" 2>&1
  echo "suite at amx, $tier: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/suite-$tier.txt" | tr '\n' ' ')"
done
# 3. Kernel speed, one thread, cold weights: AMX against VNNI (int8) and vdpbf16ps (bf16) at the crossover rows.
"$bin/bench/gemm_bench" --benchmark_min_time=0.2 \
  --benchmark_filter='^(stream.*|gemm_(s8_s32_6x64__avx512vnni|s8_s32_32x32__amx|bf16w_bf16a_f32_6x64__avx512bf16|bf16w_bf16a_f32_32x32__amx)/K:2048/N:2048/M:(1|4|8|16|64|512))$' \
  2>&1 | tee "$out/gemm.txt" | grep -E "^(stream|gemm)"
# 4. The layer, every core: without AMX, with AMX portable (int8 on AMX-INT8), with AMX native (bf16 on AMX-BF16).
for run in "avx512bf16 portable" "amx portable" "amx native"; do
  set -- $run
  MOEFUSE_MAX_ISA=$1 "$bin/tools/moefuse/moefuse" bench --preset olmoe-1b-7b --tokens 1,8,128,512,2048 \
    --quant none,w8a8 --paths chain,superkernel --iters 5 --numerics "$2" --json "$out/bench-$1-$2.json" \
    > "$out/bench-$1-$2.txt" 2>&1
  echo "== MOEFUSE_MAX_ISA=$1 --numerics $2"; grep -E "^(peaks|limits|olmoe)" "$out/bench-$1-$2.txt" | cut -c1-200
done
