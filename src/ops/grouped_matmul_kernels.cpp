// grouped_matmul's GEMM-kernel execution (grouped_matmul_kernels.h): packed grouped weights, the plan of (group x row
// block x column block) tasks and its scratch carving, the row widening, and the float and int8 task bodies with
// their epilogues. Over 500 lines because the task bodies share the plan's private types and the epilogue order;
// split apart they would need those types in a header nobody else should see.
#include "ops/grouped_matmul_kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "base/elements.h"
#include "base/groups.h"
#include "base/integers.h"
#include "base/scratch.h"
#include "kernels/rows/rows.h"
#include "moefuse/error.h"
#include "ops/round_row.h"

namespace moefuse {

// ─── PackedGroupedWeights ───────────────────────────────────────────────────────────────────────────────────────

PackedGroupedWeights::PackedGroupedWeights() noexcept = default;
PackedGroupedWeights::~PackedGroupedWeights() = default;

PackedGroupedWeights::PackedGroupedWeights(PackedGroupedWeights&& other) noexcept
    : impl_(std::move(other.impl_)), dtype_(other.dtype_), shape_(other.shape_) {
  other.dtype_ = DType::f32;
  other.shape_ = Shape{};
}

PackedGroupedWeights& PackedGroupedWeights::operator=(PackedGroupedWeights&& other) noexcept {
  if (this != &other) {
    impl_ = std::move(other.impl_);
    dtype_ = other.dtype_;
    shape_ = other.shape_;
    other.dtype_ = DType::f32;
    other.shape_ = Shape{};
  }
  return *this;
}

size_t PackedGroupedWeights::bytes() const {
  size_t total = 0;
  if (impl_)
    for (const gemm::PackedWeights* w : impl_->packed->all())
      total += w->data_bytes() + (w->col_sums() ? size_t(w->panels()) * size_t(gemm::kGemmNR) * sizeof(int32_t) : 0);
  return total;
}

std::string PackedGroupedWeights::describe() const {
  if (!impl_) return "empty packed weights";
  const int64_t G = impl_->packed->size() > 0 ? (*impl_->packed)[0].group_size() : 0;
  if (G > 0) return "packed int4 (group size " + std::to_string(G) + ")" + shape_.str();
  if (impl_->packed->size() > 0 && (*impl_->packed)[0].fp8()) return "packed fp8 e4m3" + shape_.str();
  return "packed " + std::string(dtype_name(dtype_)) + shape_.str();
}

std::shared_ptr<const gemm::PackedExperts> packed_experts(const PackedGroupedWeights& w) {
  return detail::PackedGroupedWeightsAccess::packed(w);
}

PackedGroupedWeights detail::PackedGroupedWeightsAccess::make(DType dtype, const Shape& shape,
                                                              std::vector<gemm::PackedWeights> experts) {
  PackedGroupedWeights w;
  w.impl_ = std::make_unique<PackedGroupedWeights::Impl>();
  w.impl_->packed = std::make_shared<const gemm::PackedExperts>(std::move(experts));
  w.dtype_ = dtype;
  w.shape_ = shape;
  return w;
}

namespace gmm {
namespace {

// ─── Scratch ────────────────────────────────────────────────────────────────────────────────────────────────────
// All scratch of a call lives in one block of the calling thread's scratch stack (base/scratch.h): the group plan,
// then one slot per pool thread for the task arrays. It grows only when a call needs more than an earlier call from
// the same thread did, so repeated calls of the same or smaller shapes from one thread — the layer's steady state —
// allocate nothing, whichever pool threads the dynamic schedule hands their tasks to.

// Which slot of the current call's block a thread uses: taken at the thread's first task of a call (calls are told
// apart by a process-wide id), so at most one slot per thread of the pool. Trivially destructible, so the
// thread_local costs no registration (no allocation) on first use.
std::atomic<uint64_t> g_call_ids{0};
struct SlotOfThread {
  uint64_t call = 0;
  int64_t slot = 0;
};
thread_local SlotOfThread t_slot;

// Hands out 64-byte aligned arrays from one block: first measure (base == nullptr), then carve.
class Carver {
 public:
  explicit Carver(std::byte* base) : base_(base) {}
  template <class T>
  T* take(int64_t n) {
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += (size_t(n) * sizeof(T) + 63) / 64 * 64;
    return p;
  }
  size_t used() const { return used_; }

 private:
  std::byte* base_;
  size_t used_ = 0;
};

// ─── Planning ───────────────────────────────────────────────────────────────────────────────────────────────────
// Kernel groups are cut into tasks of (row block x column block). Column blocks are multiples of 64 (the AVX-512
// tile pairs panels; gemm.h measured blocks of 64+ faster than 32) and at most 512 wide: a task widens its rows of x
// to fp32 once and uses them for the whole block, so wider blocks amortise the widening (about 12 conversions per
// 1000 multiply-adds at 512 columns). bf16 x on a kernel with a bf16-A entry (the vdpbf16ps kernels) is not widened
// at all: its rows are read in place. Blocks shrink (512, 256, 128, 64) until there are kTasksPerThread tasks per
// thread; if even 64-column blocks leave too few (few active groups, many rows each), row blocks shrink from 240
// rows down to 12 to make up the count. One thread: 512 x 240 blocks. A group's rows are then cut into equal blocks
// (rounded up to 6 rows, the height of the kernels' tiles), not a full block and a remainder: 250 rows are two
// blocks of 126 and 124, not 240 and 10. Rows are independent and every element's chain runs over all of k, so the
// cut never changes a bit.
constexpr int64_t kColBlockMax = 512;
constexpr int64_t kColBlockMin = 64;
constexpr int64_t kRowBlockMax = 240;  // multiples of kRowTile
constexpr int64_t kRowBlockMin = 12;
constexpr int64_t kRowTile = 6;
constexpr int64_t kTasksPerThread = 8;


// Rows per block for a group of `rows` rows and at most `rb` rows per block (rb a multiple of kRowTile): the fewest
// blocks of at most rb rows, of equal size rounded up to kRowTile (so still at most rb).
int64_t balanced_rows(int64_t rows, int64_t rb) { return round_up(ceil_div(rows, ceil_div(rows, rb)), kRowTile); }

struct GroupPlan {
  int64_t expert, begin, end;
  const gemm::PackedWeights* packed;  // nullptr: the reference computes the whole group as one task
  int64_t row_block;                  // kernel groups: rows per task
  int64_t first_task;                 // this group's tasks are [first_task, next group's first_task)
};

struct Plan {
  const GroupedMatmulArgs* a = nullptr;
  const Tensor* y = nullptr;
  gemm::GemmFloatFn ffn = nullptr;
  gemm::GemmBf16AFn bfn = nullptr;    // bf16 x whose kernel reads bf16 rows (gemm.h, "bf16 rows of A"): no widening
  gemm::GemmS8Fn sfn = nullptr;
  gemm::GemmU4S8Fn ufn = nullptr;     // int8 x with int4 weights (W4A8): the kernel of their group size
  rows::DequantFn dequant = nullptr;  // the int8 epilogue (rows family), chosen with the GEMM kernels
  RoundRowKernels round;              // the rounding stores to y (bf16 / f16), of the kernels' ISA level
  int64_t M = 0, K = 0, N = 0;
  bool int8 = false, int4 = false, int_out = false, int_bias = false, float_bias = false;
  bool c_direct = false;  // the kernel writes into y (f32 output of float x, i32 output of int8 x)
  int64_t col_block = kColBlockMin, col_blocks = 0;
  const GroupPlan* groups = nullptr;
  int64_t ngroups = 0, ntasks = 0;
  size_t task_bytes = 0;                      // the slot size: the arrays of the largest task (see TaskArrays)
  std::byte* slots = nullptr;                 // one slot per thread of the pool
  uint64_t call_id = 0;                       // this call's id (g_call_ids)
  std::atomic<int64_t>* next_slot = nullptr;  // slots handed out so far in this call

  // The calling thread's slot for this call.
  std::byte* slot() const {
    if (t_slot.call != call_id) {
      t_slot.call = call_id;
      t_slot.slot = next_slot->fetch_add(1, std::memory_order_relaxed);
    }
    return slots + size_t(t_slot.slot) * task_bytes;
  }
};

// Calls fn(expert, begin, end) for every non-empty group, in order (as the reference walks them).
template <class Fn>
void for_groups(const GroupedMatmulArgs& a, int64_t M, Fn&& fn) {
  if (!a.group_list.defined()) {
    if (M > 0) fn(int64_t(0), int64_t(0), M);
    return;
  }
  for_each_group(a.group_list, GroupListType(a.group_list_type),
                 [&](const GroupSpan& s) { fn(s.expert, s.begin, s.end); });
}

// ─── Element access ─────────────────────────────────────────────────────────────────────────────────────────────

template <class T>
float widen(T v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else return to_f32(v);
}

// dst[r * K + k] = float(x[r0 + r][k]) for r < R: rows of x widened exactly to fp32.
template <class T>
void widen_rows_as(const Tensor& x, int64_t r0, int64_t R, int64_t K, float* dst) {
  const int64_t s0 = x.stride(0), s1 = x.stride(1);
  const T* base = static_cast<const T*>(x.data()) + r0 * s0;
  for (int64_t r = 0; r < R; ++r) {
    const T* row = base + r * s0;
    float* d = dst + r * K;
    if (s1 == 1)
      for (int64_t k = 0; k < K; ++k) d[k] = widen(row[k]);
    else
      for (int64_t k = 0; k < K; ++k) d[k] = widen(row[k * s1]);
  }
}

void widen_rows(const Tensor& x, int64_t r0, int64_t R, int64_t K, float* dst) {
  switch (x.dtype()) {
    case DType::f32: widen_rows_as<float>(x, r0, R, K, dst); return;
    case DType::bf16: widen_rows_as<bfloat16>(x, r0, R, K, dst); return;
    case DType::f16: widen_rows_as<float16>(x, r0, R, K, dst); return;
    default: return;  // not reached: float x only
  }
}

// dst[r * K + k] = x[r0 + r][k] for r < R: rows of x (elements of type T, as they are) made contiguous.
template <class T>
void copy_rows(const Tensor& x, int64_t r0, int64_t R, int64_t K, T* dst) {
  const int64_t s0 = x.stride(0), s1 = x.stride(1);
  const T* base = static_cast<const T*>(x.data()) + r0 * s0;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < K; ++k) dst[r * K + k] = base[r * s0 + k * s1];
}

// Offset (in elements) and stride of columns [n0, ...) of expert e's row of a per-expert tensor ([E, N] or [N]).
void expert_row(const Tensor& t, int64_t e, int64_t n0, int64_t& offset, int64_t& stride) {
  if (t.dim() == 1) {
    offset = n0 * t.stride(0);
    stride = t.stride(0);
  } else {
    offset = e * t.stride(0) + n0 * t.stride(1);
    stride = t.stride(1);
  }
}

// dst[i] = float(t[e][n0 + i]), exact.
void widen_expert_row(const Tensor& t, int64_t e, int64_t n0, int64_t nb, float* dst) {
  int64_t off, st;
  expert_row(t, e, n0, off, st);
  switch (t.dtype()) {
    case DType::f32: {
      const float* p = static_cast<const float*>(t.data()) + off;
      for (int64_t i = 0; i < nb; ++i) dst[i] = p[i * st];
      return;
    }
    case DType::bf16: {
      const bfloat16* p = static_cast<const bfloat16*>(t.data()) + off;
      for (int64_t i = 0; i < nb; ++i) dst[i] = to_f32(p[i * st]);
      return;
    }
    case DType::f16: {
      const float16* p = static_cast<const float16*>(t.data()) + off;
      for (int64_t i = 0; i < nb; ++i) dst[i] = to_f32(p[i * st]);
      return;
    }
    default:
      for (int64_t i = 0; i < nb; ++i) dst[i] = load_element_f32(t.data(), t.dtype(), off + i * st);
      return;
  }
}

// dst[i] = t[e][n0 + i] of an i32 per-expert tensor.
void int_expert_row(const Tensor& t, int64_t e, int64_t n0, int64_t nb, int32_t* dst) {
  int64_t off, st;
  expert_row(t, e, n0, off, st);
  const int32_t* p = static_cast<const int32_t*>(t.data()) + off;
  for (int64_t i = 0; i < nb; ++i) dst[i] = p[i * st];
}


// ─── Task scratch ───────────────────────────────────────────────────────────────────────────────────────────────
// A task's arrays, carved from its thread's slot of the call's block; a slot fits the call's largest task.
struct TaskArrays {
  void* a = nullptr;         // R x K rows of x (fp32 for float x, bf16 for the bf16-A kernel, int8 for int8 x), when
                             // x cannot be read in place
  void* c = nullptr;         // R x nb accumulators (fp32 / int32), when the kernel cannot write into y
  int32_t* ibias = nullptr;  // nb: i32 bias
  float* fbias = nullptr;    // nb: float bias
  float* scale = nullptr;    // nb: int8 x with a float output: scale
  float* v = nullptr;        // nb: int8 x with a float output: one row of dequantised values
  float* row_scale = nullptr;  // R: int8 x with int4 weights: the rows' per_token_scale, contiguous for the kernel
};

// Lays out the arrays of a task of R rows and nb columns from `base` (nullptr: measure only); returns the bytes.
size_t carve(const Plan& p, int64_t R, int64_t nb, bool direct_a, std::byte* base, TaskArrays& t) {
  Carver c(base);
  if (!direct_a) {
    if (p.int8) t.a = c.take<int8_t>(R * p.K);
    else if (p.bfn) t.a = c.take<bfloat16>(R * p.K);
    else t.a = c.take<float>(R * p.K);
  }
  if (!p.c_direct) t.c = c.take<float>(R * nb);  // fp32 or int32: the same size
  if (p.int_bias) t.ibias = c.take<int32_t>(nb);
  if (p.float_bias) t.fbias = c.take<float>(nb);
  if (p.int4 && p.int8) {
    t.row_scale = c.take<float>(R);
  } else if (p.int8 && !p.int_out) {
    t.scale = c.take<float>(nb);
    t.v = c.take<float>(nb);
  }
  return c.used();
}

// ─── Tasks ──────────────────────────────────────────────────────────────────────────────────────────────────────
// A task's rows r0..r0+R of x as its kernel reads them: in place when x already holds the kernel's element type (f32,
// bf16 for the bf16-A kernels, int8) with unit column stride and rows at least K apart (one row: any stride), else
// `copy`d into the task's scratch.
bool rows_in_place(const Tensor& x, int64_t R, int64_t K) { return x.stride(1) == 1 && (R == 1 || x.stride(0) >= K); }

template <class T>
struct KernelRows {
  const T* rows;
  int64_t lda;
};

template <class T, class Copy>
KernelRows<T> kernel_rows(const Tensor& x, bool in_place, int64_t r0, int64_t R, int64_t K, void* scratch, Copy copy) {
  if (in_place) return {static_cast<const T*>(x.data()) + r0 * x.stride(0), R == 1 ? K : x.stride(0)};
  copy(x, r0, R, K, static_cast<T*>(scratch));
  return {static_cast<const T*>(scratch), K};
}

// The epilogues are the reference's (reference/grouped_matmul.cpp), operation for operation: float x: v + bias, act,
// one rounding; int8 x: isum + i32 bias (wrapping), float(isum) * scale, * per_token_scale, + float bias, act, one
// rounding. Activations are the reference's own function (reference::gmm_activate).

void float_task(const Plan& p, const GroupPlan& g, int64_t r0, int64_t R, int64_t n0, int64_t nb) {
  const GroupedMatmulArgs& a = *p.a;
  const Tensor& x = a.x;
  const Tensor& y = *p.y;
  const int64_t K = p.K, N = p.N;
  const bool y_f32 = y.dtype() == DType::f32;
  const bool direct_a = (x.dtype() == DType::f32 || p.bfn) && rows_in_place(x, R, K);
  TaskArrays t;
  carve(p, R, nb, direct_a, p.slot(), t);
  float* bias = t.fbias;
  auto* out = static_cast<std::byte*>(y.data());
  const int64_t es = int64_t(y.element_size());
  float* c = y_f32 ? reinterpret_cast<float*>(out) + r0 * N + n0 : static_cast<float*>(t.c);
  const int64_t ldc = y_f32 ? N : nb;
  if (K == 0) {
    for (int64_t i = 0; i < R; ++i) std::fill_n(c + i * ldc, nb, 0.0f);
  } else if (p.bfn) {  // bf16 rows as they are: the same C as widening them (gemm.h), once per task saved
    const auto [arows, lda] = kernel_rows<bfloat16>(x, direct_a, r0, R, K, t.a, copy_rows<bfloat16>);
    p.bfn(R, K, n0, n0 + nb, arows, lda, g.packed->data(), c, ldc);
  } else {
    const auto [arows, lda] = kernel_rows<float>(x, direct_a, r0, R, K, t.a, widen_rows);
    p.ffn(R, K, n0, n0 + nb, arows, lda, g.packed->data(), c, ldc);
  }

  if (!a.bias.defined() && a.act_type == 0 && y_f32) return;  // the kernel wrote the final values
  if (bias) widen_expert_row(a.bias, g.expert, n0, nb, bias);
  for (int64_t i = 0; i < R; ++i) {
    float* v = c + i * ldc;
    if (bias)
      for (int64_t n = 0; n < nb; ++n) v[n] = v[n] + bias[n];
    reference::gmm_activate(a.act_type, v, nb);
    if (!y_f32) store_row_with(p.round, v, nb, y.dtype(), out + ((r0 + i) * N + n0) * es);
  }
}

void int8_task(const Plan& p, const GroupPlan& g, int64_t r0, int64_t R, int64_t n0, int64_t nb) {
  const GroupedMatmulArgs& a = *p.a;
  const Tensor& x = a.x;
  const Tensor& y = *p.y;
  const int64_t K = p.K, N = p.N;
  const bool direct_a = rows_in_place(x, R, K);
  TaskArrays t;
  carve(p, R, nb, direct_a, p.slot(), t);
  int32_t* ibias = t.ibias;
  float *scale = t.scale, *fbias = t.fbias, *v = t.v;
  const auto [arows, lda] = kernel_rows<int8_t>(x, direct_a, r0, R, K, t.a, copy_rows<int8_t>);
  auto* out = static_cast<std::byte*>(y.data());
  const int64_t es = int64_t(y.element_size());
  int32_t* c = p.int_out ? reinterpret_cast<int32_t*>(out) + r0 * N + n0 : static_cast<int32_t*>(t.c);
  const int64_t ldc = p.int_out ? N : nb;
  if (K == 0) {
    for (int64_t i = 0; i < R; ++i) std::fill_n(c + i * ldc, nb, 0);
  } else {
    p.sfn(R, K, n0, n0 + nb, arows, lda, static_cast<const int8_t*>(g.packed->data()), g.packed->col_sums(), c, ldc);
  }

  if (ibias) int_expert_row(a.bias, g.expert, n0, nb, ibias);
  if (p.int_out) {
    if (ibias)  // int32 add, wrapping modulo 2^32 (computed in uint32 to stay defined)
      for (int64_t i = 0; i < R; ++i) {
        int32_t* s = c + i * ldc;
        for (int64_t n = 0; n < nb; ++n) s[n] = int32_t(uint32_t(s[n]) + uint32_t(ibias[n]));
      }
    return;
  }
  widen_expert_row(a.scale, g.expert, n0, nb, scale);
  if (fbias) widen_expert_row(a.bias, g.expert, n0, nb, fbias);
  const bool pts = a.per_token_scale.defined();
  for (int64_t i = 0; i < R; ++i) {
    const int64_t r = r0 + i;
    int32_t* s = c + i * ldc;
    if (ibias)
      for (int64_t n = 0; n < nb; ++n) s[n] = int32_t(uint32_t(s[n]) + uint32_t(ibias[n]));
    // float(sum) * scale, then * per_token_scale (* 1 without one: v is a product, never a signalling NaN, so
    // that multiply changes no bit).
    const float pt = pts ? static_cast<const float*>(a.per_token_scale.data())[r * a.per_token_scale.stride(0)] : 1.0f;
    p.dequant(nb, s, scale, pt, v);
    if (fbias)
      for (int64_t n = 0; n < nb; ++n) v[n] = v[n] + fbias[n];
    reference::gmm_activate(a.act_type, v, nb);
    store_row_with(p.round, v, nb, y.dtype(), out + (r * N + n0) * es);
  }
}

// int8 x with int4 weights (W4A8): the kernel applies the group scales and the row scale (gemm.h); then act_type
// and one rounding to y's dtype.
void int4_int8_task(const Plan& p, const GroupPlan& g, int64_t r0, int64_t R, int64_t n0, int64_t nb) {
  const GroupedMatmulArgs& a = *p.a;
  const Tensor& x = a.x;
  const Tensor& y = *p.y;
  const int64_t K = p.K, N = p.N;
  const bool direct_a = rows_in_place(x, R, K);
  TaskArrays t;
  carve(p, R, nb, direct_a, p.slot(), t);
  const auto [arows, lda] = kernel_rows<int8_t>(x, direct_a, r0, R, K, t.a, copy_rows<int8_t>);
  const Tensor& pts = a.per_token_scale;
  for (int64_t i = 0; i < R; ++i) t.row_scale[i] = static_cast<const float*>(pts.data())[(r0 + i) * pts.stride(0)];
  auto* out = static_cast<std::byte*>(y.data());
  const int64_t es = int64_t(y.element_size());
  float* c = p.c_direct ? reinterpret_cast<float*>(out) + r0 * N + n0 : static_cast<float*>(t.c);
  const int64_t ldc = p.c_direct ? N : nb;
  // K == 0 never reaches here: packed int4 weights have K a positive multiple of the group size.
  p.ufn(R, K, n0, n0 + nb, arows, lda, t.row_scale, g.packed->data(), c, ldc);
  if (a.act_type == 0 && p.c_direct) return;
  for (int64_t i = 0; i < R; ++i) {
    float* v = c + i * ldc;
    reference::gmm_activate(a.act_type, v, nb);
    if (!p.c_direct) store_row_with(p.round, v, nb, y.dtype(), out + ((r0 + i) * N + n0) * es);
  }
}

// A per-expert tensor restricted to expert e: [1, N] from [E, N]; [N] stays (it is the single expert's).
Tensor one_expert(const Tensor& t, int64_t e) { return t.defined() && t.dim() == 2 ? t.narrow(0, e, 1) : t; }

// The whole group on the reference: its rows of x and y, its expert's weight, bias and scale.
void reference_task(const Plan& p, const GroupPlan& g) {
  const GroupedMatmulArgs& a = *p.a;
  const int64_t R = g.end - g.begin;
  reference::GroupedMatmulArgs sub;  // the reference's own form
  sub.x = a.x.narrow(0, g.begin, R);
  sub.weight = a.weight.dim() == 3 ? a.weight.narrow(0, g.expert, 1) : a.weight;
  sub.bias = one_expert(a.bias, g.expert);
  sub.scale = one_expert(a.scale, g.expert);
  if (a.per_token_scale.defined()) sub.per_token_scale = a.per_token_scale.narrow(0, g.begin, R);
  sub.act_type = a.act_type;
  reference::grouped_matmul(sub, p.y->narrow(0, g.begin, R));
}

void run_task(const Plan& p, int64_t t) {
  // The group owning task t: the last one whose first task is <= t (groups without tasks share their successor's).
  const GroupPlan* end = p.groups + p.ngroups;
  const GroupPlan& g = *(std::upper_bound(p.groups, end, t, [](int64_t v, const GroupPlan& q) {
                           return v < q.first_task;
                         }) -
                         1);
  if (!g.packed) {
    reference_task(p, g);
    return;
  }
  const int64_t local = t - g.first_task;
  const int64_t r0 = g.begin + (local / p.col_blocks) * g.row_block;
  const int64_t R = std::min(g.end - r0, g.row_block);
  const int64_t n0 = (local % p.col_blocks) * p.col_block;
  const int64_t nb = std::min(p.N - n0, p.col_block);
  if (p.int4 && p.int8) int4_int8_task(p, g, r0, R, n0, nb);
  else if (p.int8) int8_task(p, g, r0, R, n0, nb);
  else float_task(p, g, r0, R, n0, nb);
}

}  // namespace

gemm::PackedWeights pack_expert(const Tensor& weight, int64_t e) {
  const bool w3 = weight.dim() == 3;
  const int64_t K = weight.size(-2), N = weight.size(-1);
  const int64_t sk = weight.stride(-2), sn = weight.stride(-1);
  const int64_t offset = w3 ? e * weight.stride(0) : 0;
  const auto* base = static_cast<const std::byte*>(weight.data()) + offset * int64_t(weight.element_size());
  if (weight.dtype() == DType::i8)
    return gemm::pack_weights_s8(reinterpret_cast<const int8_t*>(base), K, N, sk, sn);
  return gemm::pack_weights_f(base, weight.dtype(), K, N, sk, sn);
}

void pack_experts(const Tensor& weight, std::span<const bool> need, std::span<gemm::PackedWeights> out,
                  ThreadPool* pool) {
  auto pack = [&](int64_t e) {
    if (need.empty() || need[size_t(e)]) out[size_t(e)] = pack_expert(weight, e);
  };
  const int64_t E = int64_t(out.size());
  if (pool) pool->parallel_for(E, pack);
  else
    for (int64_t e = 0; e < E; ++e) pack(e);
}

void run_grouped_gemm(const GroupedMatmulArgs& a, std::span<const gemm::PackedWeights* const> experts,
                      const gemm::GemmKernels& kernels, ThreadPool* pool, const Tensor& y) {
  Plan p;
  p.a = &a;
  p.y = &y;
  p.M = a.x.size(0);
  p.K = a.x.size(1);
  p.N = y.size(1);
  p.int8 = a.x.dtype() == DType::i8;
  p.int_out = y.dtype() == DType::i32;
  p.int_bias = a.bias.defined() && a.bias.dtype() == DType::i32;
  p.float_bias = a.bias.defined() && !p.int_bias;
  p.c_direct = p.int8 ? p.int_out : y.dtype() == DType::f32;
  p.round = select_round_row(kernels.isa);
  if (p.int8) {
    p.sfn = kernels.s8.fn;
    p.dequant = rows::select_rows_kernels(kernels.isa).dequant;
  }
  else p.ffn = kernels.float_kernel(a.x.dtype()).fn;
  // int4 group-wise weights run the int4 kernel of their group size: float x (w4a16) the float-chain one, int8 x
  // (w4a8) the integer one, whose output is fp32.
  for (const gemm::PackedWeights* w : experts)
    if (w) {
      p.int4 = w->group_size() > 0;
      if ((p.int4 || w->fp8()) && !p.int8) p.ffn = kernels.kernel_for(*w).fn;  // FP8: float x only
      if (a.x.dtype() == DType::bf16) p.bfn = kernels.bf16a_kernel_for(*w).fn;
      if (p.int4 && p.int8) {
        p.ufn = kernels.u4s8_kernel_for(*w).fn;
        p.c_direct = y.dtype() == DType::f32;
      }
      break;
    }
  if (p.M == 0 || p.N == 0) return;

  // First pass over the groups: what the block sizes depend on.
  int64_t ngroups = 0, nref = 0, covered = 0, kernel_rows = 0, blocks = 0, max_group_rows = 0;
  for_groups(a, p.M, [&](int64_t e, int64_t begin, int64_t end) {
    ++ngroups;
    covered = end;
    if (!experts[size_t(e)]) {
      ++nref;
      return;
    }
    kernel_rows += end - begin;
    blocks += ceil_div(end - begin, kRowBlockMax);
    max_group_rows = std::max(max_group_rows, end - begin);
  });

  // Block sizes (see the planning notes above).
  const int64_t threads = pool ? pool->size() : 1;
  const int64_t want = threads > 1 ? kTasksPerThread * threads : 1;
  int64_t cb = std::min(kColBlockMax, round_up(p.N, kColBlockMin));
  while (cb > kColBlockMin && nref + blocks * ceil_div(p.N, cb) < want) cb = round_up(cb / 2, kColBlockMin);
  const int64_t ncb = ceil_div(p.N, cb);
  int64_t rb = kRowBlockMax;
  if (kernel_rows > 0 && nref + blocks * ncb < want)
    rb = std::clamp(round_up(ceil_div(kernel_rows * ncb, want), kRowBlockMin), kRowBlockMin, kRowBlockMax);
  p.col_block = cb;
  p.col_blocks = ncb;

  // The call's block: the group plan, then one slot per thread, each fitting the largest task.
  const bool direct_rows = (p.int8 || a.x.dtype() == DType::f32 || p.bfn) && a.x.stride(1) == 1 && a.x.stride(0) >= p.K;
  TaskArrays unused;
  const int64_t max_block_rows = std::min(rb, round_up(max_group_rows, kRowTile));  // >= every balanced_rows()
  p.task_bytes = carve(p, max_block_rows, std::min(cb, p.N), direct_rows, nullptr, unused);
  const size_t plan_bytes = (size_t(ngroups) * sizeof(GroupPlan) + 63) / 64 * 64;
  Scratch<std::byte> block_memory(int64_t(plan_bytes + size_t(threads) * p.task_bytes));
  std::byte* block = block_memory.data();
  auto* groups = reinterpret_cast<GroupPlan*>(block);
  std::atomic<int64_t> next_slot{0};
  p.slots = block + plan_bytes;
  p.call_id = g_call_ids.fetch_add(1, std::memory_order_relaxed) + 1;
  p.next_slot = &next_slot;

  // Second pass: the groups and their tasks, the reference ones first (they are the longest tasks: start them
  // early), then the kernel ones.
  int64_t i = 0, ntasks = 0;
  for (const bool kernel_pass : {false, true})
    for_groups(a, p.M, [&](int64_t e, int64_t begin, int64_t end) {
      const gemm::PackedWeights* w = experts[size_t(e)];
      if ((w != nullptr) != kernel_pass) return;
      const int64_t rows = balanced_rows(end - begin, rb);
      groups[i++] = GroupPlan{e, begin, end, w, rows, ntasks};
      ntasks += w ? ceil_div(end - begin, rows) * ncb : 1;
    });
  p.groups = groups;
  p.ngroups = ngroups;
  p.ntasks = ntasks;

  // Rows no group covers are zero (docs/operators.md, Numerics).
  if (covered < p.M) {
    const size_t row_bytes = size_t(p.N) * y.element_size();
    std::memset(static_cast<std::byte*>(y.data()) + size_t(covered) * row_bytes, 0, size_t(p.M - covered) * row_bytes);
  }
  auto task = [&p](int64_t t) { run_task(p, t); };
  if (pool && ntasks > 1) pool->parallel_for(ntasks, task);
  else
    for (int64_t t = 0; t < ntasks; ++t) task(t);
}

}  // namespace gmm
}  // namespace moefuse
