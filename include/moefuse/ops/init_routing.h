// moefuse/ops/init_routing.h — token permutation by expert: npu_moe_init_routing (v1) and npu_moe_init_routing_v2.
//
// Both operators sort the (token, slot) pairs of a top-k routing stably by expert id (ties keep the lower flattened
// position first, docs/operators.md, Numerics: ties) and gather the tokens' rows of x into that order, so that every
// expert's tokens are consecutive rows for grouped_matmul. They also return the index map that finalize_routing uses to
// bring the expert outputs back.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "moefuse/tensor.h"

namespace moefuse {

// ---------------------------------------------------------------------------------------------------------------
// v1: torch_npu.npu_moe_init_routing(x, row_idx, expert_idx, active_num)
// ---------------------------------------------------------------------------------------------------------------

/// Outputs of init_routing, named as torch_npu names them.
struct InitRoutingResult {
  Tensor expanded_x;           // [min(active_num, N) * K, H], x's dtype
  Tensor expanded_row_idx;     // [N * K] i32
  Tensor expanded_expert_idx;  // [N * K] i32
};

/// torch_npu.npu_moe_init_routing(x, row_idx, expert_idx, active_num).
///
/// Flattens expert_idx token-major (position t = n*K + k), sorts the positions stably by expert id (perm), and with
/// sorted_row[i] = row_idx.flatten()[perm[i]] returns
///   expanded_expert_idx[i]            = expert_idx.flatten()[perm[i]]          (the sorted expert ids)
///   expanded_row_idx[sorted_row[i]]   = i                                      (a src -> dst map indexed by row_idx)
///   expanded_x[i]                     = x[sorted_row[i] % N]   for i < min(active_num, N) * K.
/// With the conventional row_idx[n, k] = k*N + n (what gating_top_k_softmax returns), expanded_row_idx[k*N + n] is
/// the row of expanded_x holding (token n, slot k): the k-major map finalize_routing(drop_pad_mode=0) reads.
/// Entries of expanded_row_idx may point past the rows of expanded_x when active_num < N (as on torch_npu); those
/// pairs were not copied. Rows are copied bit for bit (NaN payloads, -0.0 and int8 values kept).
///
/// x:          [N, H], f32, bf16, f16 or i8, any strides.
/// row_idx:    [N, K] i32, any strides; must be a permutation of [0, N*K). (The hardware kernel agrees with this
///             formula only for the k-major row_idx above; moefuse implements the formula for any permutation.)
/// expert_idx: [N, K] i32, any strides; ids >= 0 (there is no upper bound: v1 has no expert count).
/// active_num: >= 0; the number of tokens whose rows are kept.
/// Errors: TypeError (x not f32/bf16/f16/i8; row_idx or expert_idx not i32); ValueError (undefined tensor, rank not
/// 2, shapes not [N, H] / [N, K] / [N, K], N*K >= 2^31, active_num < 0, a negative expert id (named with its
/// position), row_idx not a permutation of [0, N*K) (the first value out of range or repeated, with its position)).
InitRoutingResult init_routing(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_num);

/// As init_routing(), writing into `out` (each output contiguous, writable, of the documented dtype and shape).
void init_routing_out(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_num,
                      const InitRoutingResult& out);

// ---------------------------------------------------------------------------------------------------------------
// v2: torch_npu.npu_moe_init_routing_v2(x, expert_idx, *, ...)
// ---------------------------------------------------------------------------------------------------------------

/// Keyword arguments of npu_moe_init_routing_v2, with torch_npu's defaults. Optional tensors are undefined when not
/// given. The semantics of every member are in init_routing_v2()'s comment.
struct InitRoutingV2Options {
  Tensor scale;                              // see "Quantisation" below
  Tensor offset;                             // quant_mode 0 only: [1] f32
  int64_t active_num = -1;                   // dropless: <= 0 keeps all N*K rows, > 0 keeps min(active_num, N*K)
  int64_t expert_capacity = -1;              // drop/pad: C, 1 <= C <= N (ignored when dropless)
  int64_t expert_num = -1;                   // E; -1 = not given (allowed only without counts and drop/pad)
  int64_t drop_pad_mode = 0;                 // 0 dropless, 1 drop/pad to capacity
  int64_t expert_tokens_num_type = 0;        // 0 cumsum, 1 count, 2 key-value
  bool expert_tokens_num_flag = false;       // whether the caller asks for the count output
  int64_t quant_mode = -1;                   // -1 none, 0 static int8, 1 dynamic int8
  std::vector<int64_t> active_expert_range;  // empty = [0, expert_num]; else [start, end)
  int64_t row_idx_type = 0;                  // 0 gather (src -> dst), 1 scatter (dst -> src)
  std::optional<DType> x_dtype;              // accepted for compatibility; must be x's own dtype when given
};

/// Outputs of init_routing_v2, named as torch_npu names them.
struct InitRoutingV2Result {
  Tensor expanded_x;                    // [R, H] (dropless) or [E, C, H] (drop/pad); x's dtype, or i8 when quantised
  Tensor expanded_row_idx;              // [N * K] i32
  Tensor expert_token_cumsum_or_count;  // [end - start] i64 (types 0/1), [E, 2] i64 (type 2), [E] i64 (drop/pad)
  Tensor expanded_scale;                // [R] (dropless) or [E * C] (drop/pad) f32
};

/// torch_npu.npu_moe_init_routing_v2 (the torch_npu semantics, with docs/operators.md).
///
/// Let N = x.size(0), H = x.size(1), K = expert_idx.size(1), t = n*K + k the token-major position of (token n,
/// slot k), and [start, end) the active expert range (active_expert_range, by default [0, expert_num]; without
/// expert_num and range every id >= 0 is active). Positions whose expert is below `start` get the key +inf, the others
/// their expert id; perm is the stable ascending argsort of those keys (ties: smaller t first), so the A positions
/// whose expert is in [start, end) come first, in expert order. Ids outside the range are legitimate: they are
/// simply not routed (vllm-ascend's expert parallelism keeps only the local experts this way).
///
/// Dropless (drop_pad_mode 0). R = active_num <= 0 ? N*K : min(active_num, N*K) rows.
///   expanded_x[i] = Q(x[perm[i] / K]) for i < min(R, A); the rows past min(R, A) are zeros (operators.md).
///   expanded_row_idx, row_idx_type 0 (gather, src -> dst): [perm[i]] = i for i < A, every other entry -1. When
///     active_num < A, entries >= R appear: those pairs were routed but cut by active_num (as on torch_npu).
///   expanded_row_idx, row_idx_type 1 (scatter, dst -> src): [i] = perm[i] for i < A; entries past A are -1 (the
///     hardware leaves them uninitialised).
/// Drop/pad (drop_pad_mode 1). Needs expert_num = E, the full range [0, E], 1 <= expert_capacity = C <= N and
///   row_idx_type 0 (1 is rejected). Walking perm, the j-th position of expert e goes to slot d = e*C + j if j < C
///   and is dropped otherwise: expanded_x[e, j] = Q(x[token]), empty slots are zeros, expanded_row_idx[t] = d or -1
///   for a dropped t. active_num is ignored. An empty x (N = 0) accepts any C >= 1 (all outputs are then zeros/-1).
///
/// Count output (expert_token_cumsum_or_count, i64). c[e] = #{t : expert_idx[t] == e} for e in [start, end):
///   type 0: inclusive cumsum of c, [end - start];  type 1: c, [end - start];
///   type 2: [E, 2], rows (e, c[e]) for every e with c[e] > 0 in ascending e (absolute ids), then one (0, 0)
///           terminator row if fewer than E rows were written; the remaining rows are zeros too.
///   Drop/pad: always c over [0, E) before dropping ([E], whatever expert_tokens_num_type, as the golden computes
///   it: docs/operators.md, Numerics: open questions). The counts sum to A (active_num does not cut them).
///   The output is computed whenever expert_num is given, also when expert_tokens_num_flag is false (the flag only
///   makes expert_num mandatory). With expert_num = -1 it is an empty tensor: [0] (types 0/1) or [0, 2] (type 2).
///
/// Quantisation Q and expanded_scale (one f32 per row of expanded_x; rows that hold no token have scale 0):
///   quant_mode -1: rows are copied bit for bit in x's dtype (f32/bf16/f16/i8). scale: optional 1-D [N] f32, a
///     per-token value carried through the permutation: expanded_scale[i] = scale[token of row i]. Without scale,
///     expanded_scale is all zeros (torch_npu leaves it undefined).
///   quant_mode 0 (static int8): scale [1] f32 and offset [1] f32 required; q = clamp(rint(x*scale[0] + offset[0]),
///     -128, 127) computed in fp32 (docs/operators.md, Numerics: fp32 math; the golden does the multiply-add in fp16,
///     so results can differ where fp16 rounding moves a value across a .5 boundary). rint is round-half-even; NaN maps
///     to -128. expanded_scale is all zeros.
///   quant_mode 1 (dynamic int8): v = fp32(x row), times a smooth scale row if scale is given ([end - start, H]:
///     row (expert - start); or [1, H]: row 0), then (operators.md, Numerics): s = max|v| / 127, q = round_half_even(v / s)
///     clamped to [-127, 127], an all-zero row gives s = 0 and q = 0; expanded_scale = s. (The hardware kernel
///     truncates v/s to fp16 and rounds half away from zero, which can differ by 1; that path is not emulated.)
///   x int8 is accepted only with quant_mode -1. Other quant modes (MX/FP8/HIF8/INT4) are rejected.
/// x_dtype: torch_npu uses it to reinterpret x's storage (hifloat8); moefuse has no such formats, so it must be absent
///   or equal to x.dtype(), and has no effect.
///
/// x:          [N, H], f32, bf16, f16 (or i8 with quant_mode -1), any strides.
/// expert_idx: [N, K] i32, any strides; ids in [0, expert_num) when expert_num is given, else >= 0.
/// expert_num: -1 or >= 1; no upper limit (the hardware caps it at 10240, 5120 for key-value counts).
/// active_expert_range: empty or [start, end) with 0 <= start < end (<= expert_num when given).
///
/// Errors (all before any output is written): TypeError for a wrong dtype (x, expert_idx, scale, offset);
/// ValueError for: undefined or wrongly ranked/shaped tensors; N*K >= 2^31 or E*C >= 2^31; quant_mode not -1/0/1;
/// drop_pad_mode not 0/1; expert_tokens_num_type not 0/1/2; row_idx_type not 0/1 (or 1 with drop/pad);
/// expert_num < -1 or 0, or -1 with expert_tokens_num_flag or drop/pad; active_expert_range not empty or of length 2,
/// start < 0, end <= start, end > expert_num, or not [0, expert_num] with drop/pad; expert_capacity outside [1, N]
/// with drop/pad; scale/offset missing for quant_mode 0, given where the mode takes none (offset outside quant_mode
/// 0), or of the wrong shape; x int8 with quant_mode 0/1 (TypeError); x_dtype not x's dtype; an expert id out of
/// range (named with its value and position).
///
/// Execution (speed only: every path gives the same bits): a call takes the fast path when it is dropless
/// (drop_pad_mode 0), its active range has at most 2^20 experts (expert_num or active_expert_range given), x is
/// contiguous along H (any row stride), and quant_mode is -1 (rows copied whole) or 1 (with a smooth scale contiguous
/// along H, or none); every row_idx_type and expert_tokens_num_type. It sorts by a counting sort over the active
/// experts (the stable order above) and writes the rows of expanded_x from typed pointers, spread over the
/// operators' thread pool (threads.h) from 64K elements on. Other calls (drop/pad, quant_mode 0, no expert bound,
/// strided rows) run the scalar reference.
InitRoutingV2Result init_routing_v2(const Tensor& x, const Tensor& expert_idx,
                                    const InitRoutingV2Options& options = {});

/// As init_routing_v2(), writing into `out` (each output contiguous, writable, of the documented dtype and shape;
/// the count output has shape [0] or [0, 2] when expert_num is -1).
void init_routing_v2_out(const Tensor& x, const Tensor& expert_idx, const InitRoutingV2Options& options,
                         const InitRoutingV2Result& out);

}  // namespace moefuse
