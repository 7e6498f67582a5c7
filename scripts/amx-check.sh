#!/usr/bin/env bash
# The checks for a machine with AMX (docs/kernels.md, "AMX"): the AMX kernel tests, the whole suite at the amx level
# (one shard per CPU) in the portable tier and the native tier's tests with AMX-BF16 on, the kernels' speed against
# the VNNI and FMA ones (one thread; every schedule of the int8, W4A8 and bf16 drivers), the layer with the level's
# defaults, with AMX-BF16 and in portable, in one run each, AMX-BF16 against the FMA kernels forward by forward
# (decode), and decode of every weight format against the bench's paired read. Needs a release build with the
# benchmarks (`cmake --preset release -DMOEFUSE_BUILD_BENCH=ON && cmake --build --preset release`); writes its output
# to stdout and to the folder given (default: amx-check/).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-amx-check}
mkdir -p "$out"
bin=build/release
unset MOEFUSE_MAX_ISA MOEFUSE_AMX_BF16 MOEFUSE_BF16_DOT
"$bin/tools/moefuse/moefuse" info | tee "$out/info.txt" | grep -E "^(cpu|amx|isa|bf16 weights|numerics|prefetch)"
if ! grep -q "^amx level: *available" "$out/info.txt"; then
  echo "amx-check: this machine has no amx level (see 'amx level' above)"; exit 1
fi
# 1. The kernels on the tiles, and the model they were written against.
"$bin/tests/moefuse_tests" --gtest_filter='GemmAmx*:GemmS8*:GemmU4S8*:MachineProbe*:Cpu*:GemmBf16Dot*:GemmRegistry*' \
  > "$out/kernel-tests.txt" 2>&1
grep -E "^\[  (FAILED|PASSED) |Failure" "$out/kernel-tests.txt"
# 2. The suite at the level (portable, as CTest runs it), one shard per CPU; then the native tier with AMX-BF16.
shards=$(nproc)
for i in $(seq 0 $((shards - 1))); do
  MOEFUSE_NUMERICS=portable GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i "$bin/tests/moefuse_tests" \
    > "$out/suite-$i.txt" 2>&1 &
done
wait
echo "suite at amx, portable: $(cat "$out"/suite-*.txt | grep -E '^\[  FAILED  \] [A-Z]' | sort -u | tr '\n' ' ')"
MOEFUSE_NUMERICS=native MOEFUSE_AMX_BF16=on "$bin/tests/moefuse_tests" \
  --gtest_filter='LayerNumerics*:GemmAmx*:Layer.*' > "$out/suite-native.txt" 2>&1
echo "native with AMX-BF16: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/suite-native.txt" | tr '\n' ' ')"
# 3. Kernel speed, one thread, cold weights: AMX against VNNI (int8, W4A8) and the FMA kernels (bf16) over M, the
#    FP8 kernel this family runs (the FMA one: its block path forms 512 rows of K at a time, timed on a Zen 5 only),
#    and every schedule of the int8 driver (gemm_s8_s32_32x32_<schedule>__amx; the registry row runs
#    packed_k2048_pf1).
"$bin/bench/gemm_bench" --benchmark_min_time=0.2 \
  --benchmark_filter='^(memory.*|peak.*|gemm_(s8_s32_6x64__avx512vnni|s8_s32_32x32__amx|u4g(32|128)w_s8_f32_(6x64__avx512vnni|32x32__amx)|bf16w_bf16a_f32_6x64__avx512(bf16)?|bf16w_bf16a_f32_32x32__amx|fp8w_f32_4x64__avx512)/K:2048/N:2048/M:(1|4|8|16|64|512))$' \
  2>&1 | tee "$out/gemm.txt" | grep -E "^(memory|peak|gemm)"
"$bin/bench/gemm_bench" --benchmark_min_time=0.2 --benchmark_repetitions=3 \
  --benchmark_filter='gemm_s8_s32_32x32_[a-z0-9_]+__amx/|gemm_s8_s32_32x32__amx/K:(2048|1024)/N:2048/M:[0-9]+$' \
  2>&1 | tee "$out/gemm-s8-schedules.txt" | grep -E "^gemm.*_median"
#    The W4A8 driver's two schedules (A in place, the registry row's; A copied densely: amx_gemm_u4s8.h, "A").
"$bin/bench/gemm_bench" --benchmark_min_time=0.2 --benchmark_repetitions=3 \
  --benchmark_filter='gemm_u4g(32|128)w_s8_f32_32x32_(in_place|dense)__amx/' \
  2>&1 | tee "$out/gemm-u4s8-schedules.txt" | grep -E "^gemm.*_median"
#    The AMX-BF16 driver's two schedules of A (in place, the registry rows'; dense: amx_gemm.h, BF16A).
"$bin/bench/gemm_bench" --benchmark_min_time=0.2 --benchmark_repetitions=3 \
  --benchmark_filter='gemm_bf16w_(bf16a_)?f32_32x32_(in_place|dense)__amx/' \
  2>&1 | tee "$out/gemm-bf16-schedules.txt" | grep -E "^gemm.*_median"
# 4. The layer, every core: the level's defaults, AMX-BF16 in the native tier, and portable.
for run in "default native" "amx_bf16 native" "default portable"; do
  set -- $run
  env $([ "$1" = amx_bf16 ] && echo MOEFUSE_AMX_BF16=on) "$bin/tools/moefuse/moefuse" bench --preset olmoe-1b-7b \
    --tokens 1,8,128,512,2048 --quant none,w8a8,w4a8 --paths chain,superkernel --iters 5 --numerics "$2" \
    --json "$out/bench-$1-$2.json" > "$out/bench-$1-$2.txt" 2>&1
  echo "== $1, --numerics $2"; grep -E "^(read|limits|olmoe)" "$out/bench-$1-$2.txt" | cut -c1-200
done
# 5. AMX-BF16 (native) against the FMA kernels (portable), forward by forward in one process, decode.
for t in 1 8; do
  MOEFUSE_AMX_BF16=on "$bin/bench/layer_scaling" --preset olmoe-1b-7b --quant none --tokens $t --threads "$(nproc)" \
    --rounds 3 --forwards 20 --paths chain,superkernel --numerics native,portable 2>&1 | tee "$out/amx-bf16-decode-$t.txt"
done
# 6. Decode of every weight format on the fused path against the bench's paired read (the `vs read` column), every
#    core (issues 11-13: decode at the read bound on this CPU).
"$bin/tools/moefuse/moefuse" bench --preset olmoe-1b-7b --tokens 1,8,32 --quant none,w8a8,fp8,w4a16,w4a8 \
  --paths superkernel --iters 9 --json "$out/bench-decode-formats.json" > "$out/bench-decode-formats.txt" 2>&1
echo "== decode of every format (vs read)"; grep -E "^(read|memory|olmoe)" "$out/bench-decode-formats.txt" | cut -c1-230
