// The GEMM kernel family: C = A · B with B packed once (at weight load) and A, C plain row-major arrays.
//
// This is the contract every variant (scalar, AVX2+FMA, AVX-512, AVX-512 VNNI) implements; the grouped matmul and
// the MoE layer call it through the function pointers of a GemmKernels table chosen once, at plan time.
//
// ─── Packed layout (one layout for every M and every variant) ────────────────────────────────────────────────────
// B is a logical [K, N] matrix. Its columns are cut into panels of kGemmNR = 32; panel p holds columns
// [32p, 32p + 32), zero-padded past N.
//   Float weights (f32, bf16, f16) keep their dtype; the kernels widen them exactly to fp32 in registers.
//     Panel p is K consecutive rows of 32 elements: element (k, 32p + j) is at data[(p * K + k) * 32 + j].
//   int8 weights use the VNNI layout: K is rounded up to Kp = round_up(K, 4) with zero rows, and panel p is
//     stored as [Kp / 4][32][4]: element (k, 32p + j) is at data[p * Kp * 32 + (k / 4) * 128 + j * 4 + k % 4].
//     col_sums()[n] = Σ_k B[k, n] in int32 for n < panels * 32 (0 for the padded columns); the AVX-512 VNNI
//     kernel needs it to undo its +128 shift of A.
//   int4 group-wise weights (W4A16; dtype() is u8, group_size() is G = 32, 64 or 128, K a multiple of G) stand for
//     B[k, n] = (q[k, n] - z[k / G, n]) * s[k / G, n] with q, z in [0, 15] and s an fp32 scale. Panel p is K / G
//     group blocks of 256 + 16 G bytes; block g holds the group's 32 scales (f32), then its 32 zero biases (f32,
//     2^23 + z: see below), then G rows of 16 bytes: q(gG + r, 32p + j) is in byte j / 2 of row r, the low nibble
//     for even j. Padded columns have q = z = 0 and s = 0.
//   FP8 block-scaled weights (dtype() is u8, fp8() true) stand for B[k, n] = e4m3(k, n) * s[k / 128, n]: e4m3 values
//     (float8 "e4m3fn") with one fp32 scale per 128 rows of K (kFp8BlockK) and column. Panel p is a header of one
//     byte per 128-row block (rounded up to 64 bytes), then ceil(K / 128) blocks, each 128 bytes for its four
//     8-column vectors then its rows of 32 bytes (the e4m3 codes of columns 32p .. 32p + 31, as they are): 128
//     rows, the last block K - 128 (ceil(K / 128) - 1). A vector's 32 bytes hold its 8 scales, or two 8-entry bf16
//     tables from which the weights follow by integer arithmetic on the codes; the header byte says which, per
//     vector (fp8_layout.h: the forms, why they are exact, and how the packer checks it). The panel is rounded up
//     to 64 bytes. Padded columns: q = 0, s = 0.
// Panels follow each other without gaps, so the whole matrix is one sequential stream; the data starts 64-byte
// aligned (2 MB aligned, with transparent huge pages requested, from 2 MB on: see pack.cpp) and every panel is a
// multiple of 64 bytes long.
//
// ─── What the kernels compute ───────────────────────────────────────────────────────────────────────────────────
// A call computes C[m, n] for m in [0, M) and n in [n0, n1): n0 is a multiple of 32 and n1 <= N, so a call covers
// whole panels, the last of which may be cut at n1 (its columns >= n1 may be computed in registers, from the zero
// padding or from real weights, but are never written). `c` points at C[0, n0]: element (m, n) is written to c[m * ldc
// + (n - n0)], so a caller can hand a 32-column scratch tile as well as the full output. `a` points at A[0, 0] (row m
// at a + m * lda, K elements).
//
// Float, f32 and f16 weights (A fp32, B f32/f16, C fp32). THE ORDER IS THE CONTRACT:
//     acc = +0.0f;  for k = 0 .. K-1 in order:  acc = fma(A[m, k], float(B[k, n]), acc);   C[m, n] = acc
// with exactly one fused multiply-add (single rounding) per k and B widened exactly.
//
// bf16 weights (A fp32, B bf16, C fp32): vdpbf16ps's arithmetic (AVX512-BF16), so that CPUs that have it run it at
// twice the fp32 FMA rate and every other CPU gets the same bits from FMAs. THE ORDER IS THE CONTRACT:
//     acc = +0.0f;  for i = 0 .. ceil(K / 2) - 1 in order:
//         acc = fma_daz_ftz(A[m, 2i + 1], float(B[2i + 1, n]), acc);   (A[m, K] = B[K, n] = 0 when K is odd)
//         acc = fma_daz_ftz(A[m, 2i],     float(B[2i, n]),     acc);
//     C[m, n] = acc
// pairs of k, the odd one first; fma_daz_ftz (base/bf16_dot.h) is one fma with subnormal inputs read as zero and a
// tiny result flushed to a zero of its sign: what an fma computes under MXCSR.DAZ|FTZ and what vdpbf16ps computes
// per product. SIMD variants run their FMAs under base/bf16_dot.h's DenormalsAreZero (and restore the caller's
// MXCSR); a vdpbf16ps variant additionally needs A's values to be bf16 (every bf16 model's activations are): it
// checks that per call and otherwise computes with FMAs. Every variant gives bitwise
// the same C for every M, every n range and every row blocking, so results never depend on batch size, on the
// tasks a layer cuts the work into, or on the ISA (docs/operators.md). The one exception: when a NaN is produced,
// which NaN payload (and sign) comes out is not specified — that C[m, n] is NaN in every variant, but the bits of
// the NaN may differ between variants (x86 FMAs propagate "the first NaN operand" by instruction encoding, which the
// compiler chooses). Infinities and signed zeros are exact. The FPU must be in its default mode (round to
// nearest even; for f32/f16 weights no flush-to-zero / denormals-are-zero), as it is unless a caller changes MXCSR.
//
// int4 group-wise (W4A16: A fp32, B int4 + scales and zeros, C fp32): sums of A times the integers q per group in
// the bf16 contract's arithmetic, then the group's zero point and scale. THE ORDER IS THE CONTRACT: from acc = +0.0f,
// for each group g = 0 .. K/G - 1 in order (k0 = g·G; G is even, so the group is whole pairs):
//     sq = +0.0f;  sa = +0.0f;  for i = 0 .. G/2 - 1 in order, with k = k0 + 2i:
//         sq = fma_daz_ftz(A[m, k + 1], float(q[k + 1, n]), sq);   sq = fma_daz_ftz(A[m, k], float(q[k, n]), sq);
//         sa = fma_daz_ftz(A[m, k + 1], 1.0f, sa);                 sa = fma_daz_ftz(A[m, k], 1.0f, sa);
//     acc = fma_daz_ftz(s[g, n], fma_daz_ftz(-float(z[g, n]), sa, sq), acc)
// and C[m, n] = acc. That is Σ_g s · (Σ a q - z Σ a) = Σ_k a (q - z) s, the GPTQ weight's product, with every
// rounding placed so that the work per weight is one vdpbf16ps step on an exact bf16 q (0..15): the zero point and
// the scale are applied once per group, not per weight (sa is per row and group, shared by every column). So a
// CPU with AVX512-BF16 runs the sums on vdpbf16ps (when A's values are bf16, as every bf16 model's activations are),
// and every other CPU gives the same bits with FMAs under DenormalsAreZero, as for bf16 weights. The result is not
// bitwise "dequantise, then the f32 kernel" (it rounds at other places), but within a few fp32 ulps of Σ|a q s|
// of it: far below int4's own error (docs/layer.md states the bound the tests check). An infinite A gives NaN
// where the dequantised product would be infinite (sq and z·sa are both infinite). There is one kernel per group size
// (32, 64, 128), with the float kernels' signature (GemmFloatFn).
//
// FP8 block-scaled (A fp32, B e4m3 + scales, C fp32): the float contract above on the fp32 weights
//     w = float(bf16(float(e4m3) * s))   (e4m3 widened exactly; the product one fp32 rounding; then rounded to bf16,
//                                         round to nearest even, and widened back exactly)
// i.e. bitwise "dequantise B in fp32, round it to bf16, then the bf16 kernel" (the bf16 contract above: pairs of k,
// DAZ/FTZ): the value a checkpoint's user gets by dequantising in fp32 and casting to the bf16 model dtype. The
// weights stay 1 byte (plus 4 bytes of scale per 128 x 1) in memory; each variant forms w in registers.
//
// bf16 rows of A (GemmBf16AFn; A bf16, B bf16 or FP8, C fp32): C is bitwise what the float kernel of the same
// weights gives for the fp32 rows float(A) (bf16 widened exactly), every M, n range and row blocking. So a caller
// holding bf16 activations may skip their widening, and a vdpbf16ps kernel takes its A pairs from the rows as they
// are (no check, no fallback: every value is a bf16 value). Only the vdpbf16ps kernels (AVX512-BF16) have this entry;
// at other levels GemmKernels holds an empty one and callers widen A for the float kernel.
//
// int8 (A int8, B int8, C int32): C[m, n] = Σ_k A[m, k] · B[k, n] exactly, for K < 65536 (so |C| < 2^30).
//
// int4 group-wise x int8 (W4A8: A int8 with one fp32 scale per row, B int4 packed as for W4A16, C fp32). THE ORDER
// IS THE CONTRACT: for each group g = 0 .. K/G - 1 in order, the exact integer
//     isum_g = Σ_{k in group g} (q[k, n] - z[g, n]) · A[m, k]      (int32; |isum_g| <= 15 · 128 · G < 2^24)
// then, in fp32 from acc = +0.0f:   acc = fma(float(isum_g), s[g, n], acc)   (float(isum_g) exact: below 2^24)
// and finally C[m, n] = acc * a_scale[m] (one rounding). The integer sums may be formed in any order (they are
// exact); the fp32 steps are the same in every variant, so every variant gives bitwise the same C for every M, n
// range and row blocking. One kernel per group size (32, 64, 128), signature GemmU4S8Fn.
//
// ─── Memory rules ───────────────────────────────────────────────────────────────────────────────────────────────
// Kernels read A[m, k] only for m < M and k < K (never past a row, even when K is not a multiple of 4 or 16),
// read B only inside the panels [n0 / 32, ceil(n1 / 32)) (padding included), and write only C[m, n] for m < M,
// n0 <= n < n1. They never allocate, never throw, never look at a dtype at run time (there is one function per
// weight dtype), and are safe to call concurrently on disjoint C.
//
// ─── Performance notes for callers (measured on the 2-core Zen 4 this project targets; bench/gemm_bench.cpp) ────
// The AVX-512 kernels work on pairs of panels (6 x 64 tiles) and use 12 x 32 tiles for a lone panel. With bf16/f16
// weights, column blocks of 64 (or more) per call are faster than blocks of 32 for M >= 7 (2048 x 2048, M = 8, cold
// weights: 99 against 71 GFLOP/s; M = 64: 109 against 95); for f32 and int8 the two are within noise. Results are
// bitwise the same either way. M = 1 streams the packed weights at 23-28 GB/s, the read bandwidth one core gets
// (29 GB/s); prefill (M >= 64) reaches 86-94% of the measured FMA peak (float) and 81-90% of the vpdpbusd peak.
// int4, measured on a 2-core Zen 5 (AMD EPYC, family 26 model 2; 2048 x 2048, cold weights, one thread, the AVX2 and
// AVX-512 rows paired in one run; one core reads 34.7 GB/s): W4A16 on its group-sum contract (per-group sums on
// float(q); --benchmark_repetitions=3 --benchmark_min_time=0.3, CPU-time medians of two runs alternating with the
// kernels of the contract before, stream read 31-40 GB/s): AVX-512 G = 128, M = 1 92-101 us against 116-122 before
// (23-26 GB/s of packed bytes; about 32 GB/s with the weights in L2 or L3: the unpacking and the FMAs bound it about
// as much as memory does); M = 8 309-331 us against 349-369 (85-90% of the FMA peak: one FMA per weight and row);
// M = 64 177-184 GFLOP/s against 173-184; G = 32, M = 1 101-105 us against 187-195, M = 8 315-357 against 424-463.
// AVX2 G = 128: M = 1 175-184 us against 351-383, M = 8 651-718 against 1206-1236, M = 64 96-98 GFLOP/s against
// 70-78; G = 32, M = 1 190-225 us against 272-310, M = 8 700-781 against 1239-1292. The AVX512-BF16 W4A16 kernel
// (vdpbf16ps on bf16(q)), G = 128: M = 1 93-94 us (0.79-0.89 of the stream read), M = 8 233-235 us, M = 64 265-291
// and M = 512 239-254 GFLOP/s (gemm_u4__avx512bf16.cpp). W4A8 (AVX-512 VNNI, 6 x 64 two-panel tiles from 11 rows at
// G >= 64), G = 128: M = 1 108-111 GOP/s, M = 8 546-569, M = 64 622-679 (the W8A8 kernel 642-710 in the same runs),
// M = 512 590-615; before those tiles 108-109, 424-431, 420-438 and 388-403 (u4s8_tile__avx512.h: why).
// FP8, AVX-512 (measured on a 2-core AMD EPYC Zen 5, family 26 model 2; gemm_bench, 2048 x 2048, cold weights; two
// runs in a quiet minute whose stream read was 29 GB/s): M = 1 streams the packed FP8 weights at 23-24 GB/s (81-84%
// of it), 0.51-0.53 of the bf16 kernel's time (0.6-0.7 in a loaded minute); M = 8 0.65-0.69; M = 64 1.07-1.14 and
// M = 512 1.17 (182-185 against 205-207 GFLOP/s: the weights formed per block, and each block's carry through C).
// Against the AVX2 FP8 kernel: 2.1x at M = 1, 3.3-3.7x at M = 8, 2.1x at M = 64, 1.7-1.9x at M = 512.
// FP8 decode, AVX512-BF16 (gemm_fp8w_f32_4x64__avx512bf16's direct tiles, bf16 activations; the same Zen 5, one
// thread, cold weights, CPU time, one run with a 41 GB/s stream read): M = 1 34-37 GB/s of packed weights (82-90% of
// the read; 118-129 us at 2048 x 2048 against 145-152 for the AVX-512 FP8 kernel and 190-235 for the bf16 kernel),
// M = 4 154-156 us (AVX-512 FP8 214-236), M = 7 215-221 us (283-289): gemm_fp8__avx512bf16.cpp.
// bf16, AVX512-BF16 (gemm_bf16w_f32_6x64__avx512bf16, vdpbf16ps; the same Zen 5, gemm_bench, 2048 x 2048, cold
// weights, bf16 activations, one thread, paired with the AVX-512 FMA bf16 kernel in each run; measured single-thread
// peaks: vdpbf16ps 429-457, vfmadd231ps 236-244 GFLOP/s; beside other builds): M = 64 367-396 GFLOP/s against 205-225
// (1.6-1.9x; 80-92% of the vdpbf16ps peak), M = 512 389-436 against 220-223 (1.75-1.95x; 85-99%), M = 8 200-229
// against 160-163 (1.25-1.4x), M = 1 no slower (alternating runs: 244-299 us against 260-341; memory bound). The
// olmoe preset's layer at 512 tokens (moefuse bench, 2 threads, alternating with MOEFUSE_MAX_ISA=avx512): 184-225 ms
// against 313-330. The bf16-A entries (the same Zen 5, one run, the fp32-A entries interleaved, a loaded machine):
// bf16 weights M = 64 350-405 GFLOP/s against 339-396, M = 512 349-455 against 348-424; FP8 M = 64 317-339 against
// 264-302, M = 512 304-360 against 240-331 (docs/performance.md, issue 15).
//
// Preconditions (asserted in debug builds, not checked in release): M >= 0; K equals the packed K; 0 <= n0 <= n1
// <= N; n0 % 32 == 0; lda >= K; ldc >= n1 - n0 (when M > 1); pointers valid for the ranges above. Unaligned
// pointers and leading dimensions are fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "moefuse/cpu.h"
#include "moefuse/dtype.h"
#include "moefuse/numerics.h"

namespace moefuse::gemm {

struct Int4Source;
struct Fp8Source;

/// Columns per packed panel (and the width of every micro-tile).
inline constexpr int64_t kGemmNR = 32;

/// Weights packed for the kernels. Owns its memory (64-byte aligned, allocated once, by the pack functions);
/// move-only; immutable after packing, so any number of threads may read it at once. A default-constructed
/// PackedWeights is empty (K = N = 0, no data).
class PackedWeights {
 public:
  PackedWeights() = default;
  PackedWeights(PackedWeights&&) noexcept = default;
  PackedWeights& operator=(PackedWeights&&) noexcept = default;
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;

  DType dtype() const { return dtype_; }
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  /// ceil(N / 32).
  int64_t panels() const { return panels_; }
  /// FP8 block-scaled weights (e4m3 + scales, layout above; dtype() is u8 and group_size() 0).
  bool fp8() const { return fp8_; }
  /// int4 group-wise weights: G (32, 64 or 128); 0 for the other dtypes.
  int64_t group_size() const { return group_size_; }
  /// Rows stored per panel: K for float and int4 weights, round_up(K, 4) for int8.
  int64_t k_padded() const { return k_padded_; }
  /// Bytes of one panel: k_padded() * 32 * element size (int4: K / G * (256 + 16 G)).
  size_t panel_bytes() const { return panel_bytes_; }
  /// Bytes of all panels (the stream a kernel call over [0, N) reads once per row block).
  size_t data_bytes() const { return size_t(panels_) * panel_bytes_; }

  /// Start of panel 0; panel p starts panel_bytes() * p bytes further. nullptr when empty.
  const void* data() const { return storage_.get(); }
  /// int8 only: panels() * 32 column sums (zero past N). nullptr for float weights.
  const int32_t* col_sums() const { return col_sums_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  friend PackedWeights pack_weights_f(const void*, DType, int64_t, int64_t, int64_t, int64_t);
  friend PackedWeights pack_weights_s8(const int8_t*, int64_t, int64_t, int64_t, int64_t);
  friend PackedWeights pack_weights_u4(const Int4Source&, int64_t, int64_t, int64_t);
  friend PackedWeights pack_weights_fp8(const Fp8Source&, int64_t, int64_t);
  // panel_bytes 0: k_padded * 32 * the dtype's size.
  static PackedWeights allocate(DType dtype, int64_t K, int64_t N, int64_t k_padded, bool with_col_sums,
                                size_t panel_bytes = 0);

  std::unique_ptr<std::byte[], Free> storage_;
  int32_t* col_sums_ = nullptr;  // inside storage_, after the panels
  DType dtype_ = DType::f32;
  int64_t k_ = 0, n_ = 0, panels_ = 0, k_padded_ = 0, group_size_ = 0;
  bool fp8_ = false;
  size_t panel_bytes_ = 0;
};

/// Packs the logical [K, N] float matrix B, element (k, n) at src + k * stride_k + n * stride_n (element strides,
/// any sign: [K, N] row-major storage is (N, 1); Hugging Face [N, K] storage is (1, K) — no transpose copy needed).
/// dtype is f32, bf16 or f16 and stays so in the packed form (bit patterns copied, NaN payloads included).
/// Throws TypeError for another dtype, ValueError for K < 0 or N < 0, ResourceError when memory runs out.
PackedWeights pack_weights_f(const void* src, DType dtype, int64_t K, int64_t N, int64_t stride_k, int64_t stride_n);

/// Packs the logical [K, N] int8 matrix B (strides as above) into the VNNI layout and computes its column sums.
/// Throws ValueError for K < 0, K >= 65536 or N < 0, ResourceError when memory runs out.
PackedWeights pack_weights_s8(const int8_t* src, int64_t K, int64_t N, int64_t stride_k, int64_t stride_n);

/// Where pack_weights_u4 reads a logical [K, N] int4 matrix and its [K / G, N] scales and zeros (element strides,
/// any sign, as for pack_weights_f): q(k, n) = q[k * q_stride_k + n * q_stride_n] (one value 0..15 per byte),
/// s(g, n) = scale[g * sz_stride_g + n * sz_stride_n], z(g, n) = zero[the same index] (0..15).
struct Int4Source {
  const uint8_t* q = nullptr;
  int64_t q_stride_k = 0, q_stride_n = 0;
  const float* scale = nullptr;
  const uint8_t* zero = nullptr;
  int64_t sz_stride_g = 0, sz_stride_n = 0;
};

/// The group sizes the int4 kernels are built for.
inline constexpr int64_t kInt4GroupSizes[] = {32, 64, 128};

/// Packs int4 group-wise weights (layout above). Throws ValueError for K < 0, N < 0, G not 32, 64 or 128, K not a
/// multiple of G, K >= 65536, or a q or z above 15 (naming the first); ResourceError when memory runs out. Scales
/// are copied as they are (non-finite ones included).
PackedWeights pack_weights_u4(const Int4Source& src, int64_t K, int64_t N, int64_t G);

/// Rows of K per FP8 scale in the packed form: the block of the FP8 releases (weight_block_size [128, 128]).
inline constexpr int64_t kFp8BlockK = 128;

/// Where pack_weights_fp8 reads a logical [K, N] e4m3 matrix and its block scales (element strides, any sign, as
/// for pack_weights_f): q(k, n) = q[k * q_stride_k + n * q_stride_n] (e4m3 bit patterns), and its scale
/// s(k, n) = scale_inv[(k / block_k) * s_stride_kb + (n / block_n) * s_stride_nb].
struct Fp8Source {
  const uint8_t* q = nullptr;
  int64_t q_stride_k = 0, q_stride_n = 0;
  const float* scale_inv = nullptr;
  int64_t s_stride_kb = 0, s_stride_nb = 0;
  int64_t block_k = kFp8BlockK, block_n = kFp8BlockK;
  /// Every vector area holds its 8 scales (no tables): what the FP8-activation kernels read (fp8_act.h).
  bool scales_only = false;
};

/// Packs FP8 block-scaled weights (layout above). block_n may be any size >= 1 (each column's scale is copied into
/// its panel); block_k must be kFp8BlockK. NaN scales are stored as one quiet NaN, others as they are. Throws
/// ValueError for K < 0, N < 0, block_k other than 128, block_n < 1; ResourceError when memory runs out.
PackedWeights pack_weights_fp8(const Fp8Source& src, int64_t K, int64_t N);

/// The weights `w` (FP8) stands for, as the kernels compute with them: bf16(float(e4m3) * s) at dst + k * stride_k +
/// n * stride_n for k < K, n < N. Does nothing for weights that are not FP8. Never allocates or throws.
void dequantise_weights_fp8(const PackedWeights& w, bfloat16* dst, int64_t stride_k, int64_t stride_n);

/// The inverse of pack_weights_u4 (w must be int4): writes q, scales and zeros at the places `dst` names (its
/// pointers writable). Never allocates or throws.
void unpack_weights_u4(const PackedWeights& w, const Int4Source& dst);

/// The inverse of the pack functions: writes every element (k, n), k < K, n < N, of `w` to dst + k * stride_k + n *
/// stride_n (element strides; the element size is w.dtype()'s), bit patterns as packed. Used where a caller needs
/// the plain weights back from the only copy it kept (MoeLayer::weights()). Never allocates or throws.
void unpack_weights(const PackedWeights& w, void* dst, int64_t stride_k, int64_t stride_n);

/// Float kernel (one per weight dtype): see "What the kernels compute". `b` is PackedWeights::data().
using GemmFloatFn = void (*)(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                             float* c, int64_t ldc);

/// Float kernel on bf16 rows of A ("bf16 rows of A"): `a` row m at a + m * lda (elements), K bf16 each.
using GemmBf16AFn = void (*)(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a, int64_t lda,
                             const void* b, float* c, int64_t ldc);

/// int8 kernel: `b` is PackedWeights::data(), `col_sums` is PackedWeights::col_sums().
using GemmS8Fn = void (*)(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b,
                          const int32_t* col_sums, int32_t* c, int64_t ldc);

/// int4 x int8 kernel (W4A8): `b` is PackedWeights::data() of int4 weights, `a_scale` M fp32 row scales.
using GemmU4S8Fn = void (*)(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                            const float* a_scale, const void* b, float* c, int64_t ldc);

struct GemmU4S8Kernel {
  GemmU4S8Fn fn = nullptr;
  const char* name = "";  // e.g. "gemm_u4g128w_s8_f32_2x32__avx2"
};

struct GemmFloatKernel {
  GemmFloatFn fn = nullptr;
  const char* name = "";  // e.g. "gemm_bf16w_f32_6x64__avx512"
};

struct GemmBf16AKernel {
  GemmBf16AFn fn = nullptr;  // nullptr: no such entry at this level (widen A for the float kernel)
  const char* name = "";     // e.g. "gemm_bf16w_bf16a_f32_6x64__avx512bf16"
};

struct GemmS8Kernel {
  GemmS8Fn fn = nullptr;
  const char* name = "";  // e.g. "gemm_s8_s32_6x64__avx512vnni"
};

/// The kernels of one ISA level, chosen once (at plan time) and called through the pointers.
struct GemmKernels {
  Isa isa = Isa::scalar;
  bool vnni = false;
  Numerics numerics = Numerics::portable;
  GemmFloatKernel f32w, bf16w, f16w;
  GemmFloatKernel u4w_g32, u4w_g64, u4w_g128;  // int4 group-wise weights, one kernel per group size
  GemmFloatKernel fp8w;                         // FP8 block-scaled weights
  GemmBf16AKernel bf16w_bf16a, fp8w_bf16a;      // bf16 rows of A with bf16 / FP8 weights (empty below avx512bf16)
  GemmS8Kernel s8;
  GemmU4S8Kernel u4s8_g32, u4s8_g64, u4s8_g128;  // int4 group-wise weights x int8 rows (W4A8), per group size

  /// The float kernel for weights of `dtype` (f32, bf16, f16); an empty kernel (fn == nullptr) for other dtypes.
  /// Call at plan time, never per tile.
  const GemmFloatKernel& float_kernel(DType dtype) const;
  /// The kernel for weights packed as `w` is: float_kernel(w.dtype()), the int4 kernel of w.group_size(), or fp8w.
  const GemmFloatKernel& kernel_for(const PackedWeights& w) const;
  /// The bf16-A entry for weights packed as `w`: bf16w_bf16a (bf16 weights), fp8w_bf16a (FP8), else an empty one.
  const GemmBf16AKernel& bf16a_kernel_for(const PackedWeights& w) const;
  /// The W4A8 kernel for int4 weights packed as `w` (of w.group_size()); an empty kernel for other weights.
  const GemmU4S8Kernel& u4s8_kernel_for(const PackedWeights& w) const;
};

/// Kernels of level `isa`; with vnni (meaningful from Isa::avx512 on) the int8 kernel uses AVX-512 VNNI, the float
/// kernels are the same; in the native tier (moefuse/numerics.h) bf16 weights run on AMX-BF16 at level amx. The
/// caller must pass a level the machine supports (an entry of available_isas(), and vnni only when
/// vnni_available()): calling a kernel of a higher level faults with an illegal instruction.
GemmKernels select_gemm_kernels(Isa isa, bool vnni, Numerics numerics = Numerics::portable);

/// The kernels moefuse dispatches to now in tier `numerics`: select_gemm_kernels(active_isa(), use_avx512_vnni(),
/// numerics).
GemmKernels select_gemm_kernels(Numerics numerics = Numerics::portable);

/// Every level this machine can run, scalar first, up to detected_isa() (the MOEFUSE_MAX_ISA / set_max_isa cap is
/// ignored: this is for tests and benchmarks that force each variant).
std::vector<Isa> available_isas();

/// Whether this machine can run the AVX-512 VNNI int8 kernel (detected_isa() is avx512 or above and the CPU has VNNI).
bool vnni_available();

}  // namespace moefuse::gemm
