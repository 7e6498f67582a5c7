// The asm of the peak loops of machine_probe.h, shared by the per-ISA files that define them: 12 independent
// accumulator chains (registers 0..11) fed by two zeroed source registers (12, 13).
#pragma once

// One instruction `op` (e.g. "vfmadd231ps ") on the registers named `reg` ("zmm" or "ymm").
#define MOEFUSE_PROBE_ONE(op, reg, acc) op "%%" reg "12, %%" reg "13, %%" reg acc "\n\t"
#define MOEFUSE_PROBE_REPEAT12(op, reg)                                                                         \
  MOEFUSE_PROBE_ONE(op, reg, "0") MOEFUSE_PROBE_ONE(op, reg, "1") MOEFUSE_PROBE_ONE(op, reg, "2")               \
  MOEFUSE_PROBE_ONE(op, reg, "3") MOEFUSE_PROBE_ONE(op, reg, "4") MOEFUSE_PROBE_ONE(op, reg, "5")               \
  MOEFUSE_PROBE_ONE(op, reg, "6") MOEFUSE_PROBE_ONE(op, reg, "7") MOEFUSE_PROBE_ONE(op, reg, "8")               \
  MOEFUSE_PROBE_ONE(op, reg, "9") MOEFUSE_PROBE_ONE(op, reg, "10") MOEFUSE_PROBE_ONE(op, reg, "11")
// Zeroing an xmm register zeroes the whole zmm / ymm.
#define MOEFUSE_PROBE_ZERO14                                                                                  \
  "vpxor %%xmm0, %%xmm0, %%xmm0\n\tvpxor %%xmm1, %%xmm1, %%xmm1\n\tvpxor %%xmm2, %%xmm2, %%xmm2\n\t"       \
  "vpxor %%xmm3, %%xmm3, %%xmm3\n\tvpxor %%xmm4, %%xmm4, %%xmm4\n\tvpxor %%xmm5, %%xmm5, %%xmm5\n\t"       \
  "vpxor %%xmm6, %%xmm6, %%xmm6\n\tvpxor %%xmm7, %%xmm7, %%xmm7\n\tvpxor %%xmm8, %%xmm8, %%xmm8\n\t"       \
  "vpxor %%xmm9, %%xmm9, %%xmm9\n\tvpxor %%xmm10, %%xmm10, %%xmm10\n\tvpxor %%xmm11, %%xmm11, %%xmm11\n\t" \
  "vpxor %%xmm12, %%xmm12, %%xmm12\n\tvpxor %%xmm13, %%xmm13, %%xmm13\n\t"
#define MOEFUSE_PROBE_CLOBBER14                                                                                       \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
      "cc"
// Pairs (12 per iteration) of a product into a temporary (registers 6..11) and its accumulation into one of 6
// chains (registers 0..5): for instructions that do not accumulate themselves (vpmaddwd + vpaddd).
#define MOEFUSE_PROBE_PAIR(mul, add, reg, tmp, acc) \
  mul "%%" reg "12, %%" reg "13, %%" reg tmp "\n\t" add "%%" reg tmp ", %%" reg acc ", %%" reg acc "\n\t"
#define MOEFUSE_PROBE_PAIR12(mul, add, reg)                                                                 \
  MOEFUSE_PROBE_PAIR(mul, add, reg, "6", "0") MOEFUSE_PROBE_PAIR(mul, add, reg, "7", "1")                    \
  MOEFUSE_PROBE_PAIR(mul, add, reg, "8", "2") MOEFUSE_PROBE_PAIR(mul, add, reg, "9", "3")                    \
  MOEFUSE_PROBE_PAIR(mul, add, reg, "10", "4") MOEFUSE_PROBE_PAIR(mul, add, reg, "11", "5")                  \
  MOEFUSE_PROBE_PAIR(mul, add, reg, "6", "0") MOEFUSE_PROBE_PAIR(mul, add, reg, "7", "1")                    \
  MOEFUSE_PROBE_PAIR(mul, add, reg, "8", "2") MOEFUSE_PROBE_PAIR(mul, add, reg, "9", "3")                    \
  MOEFUSE_PROBE_PAIR(mul, add, reg, "10", "4") MOEFUSE_PROBE_PAIR(mul, add, reg, "11", "5")
// The whole loop: `iters` iterations of 12 instructions, then vzeroupper (no AVX-SSE transition penalty after).
#define MOEFUSE_PROBE_LOOP(iters, op, reg)                                                                   \
  __asm__ volatile(MOEFUSE_PROBE_ZERO14 "1:\n\t" MOEFUSE_PROBE_REPEAT12(op, reg) "dec %0\n\tjnz 1b\n\tvzeroupper" \
                   : "+r"(iters)::MOEFUSE_PROBE_CLOBBER14)
#define MOEFUSE_PROBE_PAIR_LOOP(iters, mul, add, reg)                                                          \
  __asm__ volatile(MOEFUSE_PROBE_ZERO14 "1:\n\t" MOEFUSE_PROBE_PAIR12(mul, add, reg) "dec %0\n\tjnz 1b\n\tvzeroupper" \
                   : "+r"(iters)::MOEFUSE_PROBE_CLOBBER14)
