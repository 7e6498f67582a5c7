#include "layer/fused_decode.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "base/elements.h"
#include "base/integers.h"
#include "base/poll.h"
#include "base/scratch.h"
#include "base/timing.h"
#include "layer/act_order.h"
#include "layer/router.h"
#include "moefuse/error.h"
#include "ops/swiglu_clip_quant_fast.h"

namespace moefuse::layer {
namespace {


// Output columns per A / B task: about kTaskWeightBytes of packed weights per task (both halves of w13 for A), in
// multiples of 64 (pairs of packed panels, gemm.h), 64 to 512, narrowed while there are fewer than 8 tasks per
// thread. Long tasks stream better (measured with `moefuse bench`'s paired vs_chain, olmoe, 2 threads): 64-column
// int8 tasks streamed at 25 GB/s against the chain's 39; 128 KB tasks ran 10% behind the chain at T = 32; 2 MB
// tasks run at 0.65-0.8 of the chain's time at T = 1 and level with it (within +-3% noise) at T = 32-96.
constexpr int64_t kTaskWeightBytes = 2 << 20;
int64_t task_columns(int64_t weight_bytes_per_column, int64_t groups, int64_t width, int threads) {
  int64_t cols = std::clamp<int64_t>(kTaskWeightBytes / std::max<int64_t>(1, weight_bytes_per_column) / 64 * 64, 64, 512);
  while (cols > 64 && groups * ceil_div(width, cols) < 8 * int64_t(threads)) cols /= 2;
  return cols;
}
constexpr int64_t kCombineBlock = 256;  // output columns per C task


// Thrown by a task that stops waiting because another task failed (the pool reports the first error, not this).
struct Abandoned : std::exception {};

// One decode step: the task graph of fused_decode.h over one batch. In experts-only mode (run_fused_experts) x holds
// rows already expanded and grouped by the caller (use_groups): no shared expert, no combine, y is the output.
class Step {
 public:
  Step(const MoeConfig& c, const LayerWeights& w, const PackedLayerWeights& p, const Tensor& x, const Tensor& out,
       FusedBuffers& b, const Routed& routed, bool experts_only = false)
      : c_(c), w_(w), x_(x), out_(out), b_(b), routed_(routed), T_(x.size(0)), H_(c.hidden_size),
        I_(c.moe_intermediate_size), E_(c.num_experts), K_(c.num_experts_per_tok),
        Is_(experts_only ? 0 : c.shared_expert_width()), experts_only_(experts_only), model_(c.dtype),
        slot_(rows::slot(c.dtype)), int8_(int8_activations(c.quant_mode)), int4_int8_(c.quant_mode == QuantMode::w4a8),
        clip_(c.quant_mode == QuantMode::w8a8c8), fp8_(p.fp8), rows_(p.kernels.rows),
        clipk_(clip_ ? select_swiglu_clip(p.kernels.rows.isa) : SwigluClipKernels{}), w13_(p.w13.experts->all()),
        w2_(p.w2.experts->all()) {
    if (Is_ > 0) {
      shared_w13_ = &(*p.shared_w13.experts)[0];
      shared_w2_ = &(*p.shared_w2.experts)[0];
    }
    // w4a16 runs the float path on the int4 kernel of its group size (one G for every projection of the layer), FP8
    // weights on the FP8 kernel (every projection of such a layer is FP8).
    float_fn_ = int8_ ? nullptr : p.kernels.gemm.kernel_for((*p.w13.experts)[0]).fn;
    s8_fn_ = p.kernels.gemm.s8.fn;
    // w4a8: the int4 x int8 kernel of the group size, which writes dequantised fp32 (group and row scales applied).
    if (int4_int8_) u4s8_fn_ = p.kernels.gemm.u4s8_kernel_for((*p.w13.experts)[0]).fn;
  }

  // Sorts the slots by expert and, for w8a8, quantises x (per token, or per row with smooth scales). Serial.
  void prepare() {
    const int32_t* topk = routed_.topk_idx.data_as<const int32_t>();
    int32_t* slot_row = b_.slot_row.data_as<int32_t>();
    int32_t* row_token = b_.row_token.data_as<int32_t>();
    int32_t* group_expert = b_.group_expert.data_as<int32_t>();
    int64_t* group_begin = b_.group_begin.data_as<int64_t>();
    // Rows sorted by expert, slots of one expert in slot order (as init_routing_v2; any order gives the same bits).
    Scratch<int64_t> next(E_, 0);
    for (int64_t s = 0; s < T_ * K_; ++s) ++next[topk[s]];
    groups_ = 0;
    int64_t row = 0;
    for (int64_t e = 0; e < E_; ++e) {
      const int64_t n = next[e];
      next[e] = row;
      if (n == 0) continue;
      group_expert[groups_] = int32_t(e);
      group_begin[groups_++] = row;
      row += n;
    }
    group_begin[groups_] = row;
    for (int64_t s = 0; s < T_ * K_; ++s) {
      const int64_t r = next[topk[s]]++;
      slot_row[s] = int32_t(r);
      row_token[r] = int32_t(s / K_);
    }
    // The shared expert is group `groups_` (rows = tokens); its first row index is not used.
    if (Is_ > 0) group_expert[groups_] = int32_t(E_);

    const bool smooth = w_.smooth_scale1.defined();
    if (!int8_) return;  // float models: the A tasks widen their rows of x as they gather them
    // w8a8: init_routing_v2's dynamic quantisation. Without a smooth scale a token's row is the same for each of its
    // experts and for the shared expert: quantise it once, into the first T rows of x_q. With one, the
    // routed rows are quantised per (row, expert) into x_q and the shared expert's per token into shared_x_q.
    Scratch<float> v(H_);
    const auto* x = static_cast<const std::byte*>(x_.data());
    const int64_t row_bytes = x_.stride(0) * int64_t(x_.element_size());
    auto quantize_token = [&](int64_t t, const float* smooth_row, int8_t* q, float* scale) {
      widen_row(x + t * row_bytes, x_.dtype(), H_, x_.stride(1), v.data());
      *scale = rows_.quantize[0](H_, v.data(), smooth_row, v.data(), q);
    };
    int8_t* xq = b_.x_q.data_as<int8_t>();
    float* xs = b_.x_scale.data_as<float>();
    if (smooth) {
      const float* s1 = w_.smooth_scale1.data_as<const float>();
      for (int64_t g = 0; g < groups_; ++g)
        for (int64_t r = group_begin[g]; r < group_begin[g + 1]; ++r)
          quantize_token(row_token[r], s1 + group_expert[g] * H_, xq + r * H_, xs + r);
      if (Is_ > 0)
        for (int64_t t = 0; t < T_; ++t)
          quantize_token(t, nullptr, b_.shared_x_q.data_as<int8_t>() + t * H_, b_.shared_x_scale.data_as<float>() + t);
    } else {
      for (int64_t t = 0; t < T_; ++t) quantize_token(t, nullptr, xq + t * H_, xs + t);
    }
  }

  // Experts-only mode: the caller filled group_expert / group_begin with `groups` groups and row_token with each
  // row's own index (so that the A tasks read row r of x, or of x_q, for row r).
  void use_groups(int64_t groups) { groups_ = groups; }

  // Cuts the work into tasks for the pool's threads and takes its wait policy; returns their count.
  int64_t tasks(const ThreadPool& pool) {
    const int threads = pool.size();
    spin_micros_ = pool.spin_micros();
    // Bytes per weight, for the block widths (int4 counted as 1: its 0.5 bytes plus scales, rounded up).
    // FP8 weights: 1 byte plus scales.
    const int64_t es = int8_ || fp8_ || int4_weights(c_.quant_mode) ? 1 : int64_t(dtype_size(model_));
    all_groups_ = groups_ + (Is_ > 0 ? 1 : 0);
    block_a_ = task_columns(2 * H_ * es, all_groups_, I_, threads);
    block_b_ = task_columns(I_ * es, all_groups_, H_, threads);
    nbI_ = ceil_div(I_, block_a_);
    nbIs_ = ceil_div(Is_, block_a_);
    nbH_ = ceil_div(H_, block_b_);
    nA_ = groups_ * nbI_ + (Is_ > 0 ? nbIs_ : 0);
    nQ_ = int8_ ? all_groups_ : 0;
    nB_ = all_groups_ * nbH_;
    nC_ = experts_only_ ? 0 : T_ * ceil_div(H_, kCombineBlock);
    std::memset(b_.counters.data(), 0, size_t(b_.counters.numel()) * sizeof(int32_t));
    return nA_ + nQ_ + nB_ + nC_;
  }

  void run(int64_t i) {
    try {
      if (i < nA_) return task_a(i);
      i -= nA_;
      if (i < nQ_ + nB_) {  // per group: its Q (int8 activations), then its B tasks (fused_decode.h)
        const int64_t per_group = (int8_ ? 1 : 0) + nbH_, g = i / per_group, j = i % per_group - (int8_ ? 1 : 0);
        return j < 0 ? task_q(g) : task_b(g, j);
      }
      task_c(i - nQ_ - nB_);
    } catch (const Abandoned&) {
      throw;
    } catch (...) {
      abandon();
      throw;
    }
  }

 private:
  // Counters: [g] = A tasks done of group g, [E + 1 + g] = its Q task done, [2 (E + 1)] = B tasks done in all.
  std::atomic_ref<int32_t> counter(int64_t i) { return std::atomic_ref<int32_t>(b_.counters.data_as<int32_t>()[i]); }
  void finished(int64_t i) {
    counter(i).fetch_add(1, std::memory_order_release);
    counter(i).notify_all();  // no system call unless a thread sleeps in wait_for
  }
  // A task waits for lower-index tasks as the pool's threads wait for a loop: it polls for up to the pool's spin time,
  // then sleeps on the counter (futex). A wait that only spun and yielded kept its core while the thread it waited for
  // was preempted (sched_yield need not hand the core to another process's thread); sleeping frees it. No speed-up
  // was measurable on the 2-core Zen 5 VM (docs/performance.md, "The fused step's waits sleep too").
  void wait_for(int64_t i, int32_t target) {
    std::atomic_ref<int32_t> c = counter(i);
    const auto done = [&] {
      return c.load(std::memory_order_acquire) >= target || failed_.load(std::memory_order_acquire);
    };
    if (!poll_until(done, spin_micros_))
      for (int32_t v = c.load(std::memory_order_acquire); v < target && !failed_.load(std::memory_order_acquire);
           v = c.load(std::memory_order_acquire))
        c.wait(v, std::memory_order_acquire);
    if (failed_.load(std::memory_order_acquire)) throw Abandoned{};
  }
  // A task failed: the tasks waiting for any counter must stop. Each counter moves past every target (so that a
  // thread about to sleep on the value it read does not) and its sleepers are woken; they see failed_ and leave.
  void abandon() {
    failed_.store(true, std::memory_order_release);
    for (int64_t i = 0; i < b_.counters.numel(); ++i) {
      counter(i).fetch_add(kAbandonedCount, std::memory_order_release);
      counter(i).notify_all();
    }
  }
  static constexpr int32_t kAbandonedCount = 1 << 30;  // above any count of tasks

  bool is_shared(int64_t g) const { return g == groups_; }
  int64_t width(int64_t g) const { return is_shared(g) ? Is_ : I_; }  // the group's intermediate width
  int64_t row_begin(int64_t g) const { return is_shared(g) ? 0 : b_.group_begin.data_as<const int64_t>()[g]; }
  int64_t row_end(int64_t g) const { return is_shared(g) ? T_ : b_.group_begin.data_as<const int64_t>()[g + 1]; }
  int64_t expert(int64_t g) const { return b_.group_expert.data_as<const int32_t>()[g]; }
  const gemm::PackedWeights& w13(int64_t g) const { return is_shared(g) ? *shared_w13_ : *w13_[size_t(expert(g))]; }
  const gemm::PackedWeights& w2(int64_t g) const { return is_shared(g) ? *shared_w2_ : *w2_[size_t(expert(g))]; }
  // The group's SwiGLU output rows: fp32 [rows, W] (model-dtype values for float models, pre-quantisation for w8a8).
  float* a_f32(int64_t g) const {
    return is_shared(g) ? b_.shared_a_f32.data_as<float>() : b_.a_f32.data_as<float>() + row_begin(g) * I_;
  }

  // Act order (LayerWeights::w13_perm): the group's input order, or nullptr.
  const int32_t* input_order(int64_t g) const {
    const Tensor& perm = is_shared(g) ? w_.shared_w13_perm : w_.w13_perm;
    return perm.defined() ? perm.data_as<const int32_t>() + (is_shared(g) ? 0 : expert(g)) * H_ : nullptr;
  }

  // The A operand of group g's first GEMM: its rows of x, contiguous — float models: widened from x into `gather`;
  // w8a8: the quantised rows, gathered into `gather` when they are not already contiguous or are put in the group's
  // input order (act order: the chain's gather, after the quantisation).
  // w8a8 also gives each row's quantisation scale through `row_scale`.
  const void* x_rows(int64_t g, Scratch<std::byte>& gather, const float** row_scale) const {
    const int64_t r0 = row_begin(g), n = row_end(g) - r0;
    const int32_t* row_token = b_.row_token.data_as<const int32_t>();
    const int32_t* order = input_order(g);
    if (!int8_) {
      auto* dst = reinterpret_cast<float*>(gather.data());
      const auto* x = static_cast<const std::byte*>(x_.data());
      const int64_t row_bytes = x_.stride(0) * int64_t(x_.element_size());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = is_shared(g) ? i : row_token[r0 + i];
        widen_row(x + t * row_bytes, x_.dtype(), H_, x_.stride(1), dst + i * H_);
      }
      if (order) gather_rows_in_place(gather.data(), n, H_ * 4, H_, 4, order);
      return dst;
    }
    const bool smooth = w_.smooth_scale1.defined();
    const int8_t* xq = b_.x_q.data_as<const int8_t>();
    const float* xs = b_.x_scale.data_as<const float>();
    // Rows of their own (row i of the group at src + i * H_) or of their tokens (xq's row row_token[r0 + i]).
    const bool own_rows = is_shared(g) || smooth;
    const int8_t* src = is_shared(g) ? (smooth ? b_.shared_x_q.data_as<const int8_t>() : xq) : xq + r0 * H_;
    const float* src_scale = is_shared(g) ? (smooth ? b_.shared_x_scale.data_as<const float>() : xs) : xs + r0;
    if (own_rows && !order) {
      *row_scale = src_scale;
      return src;
    }
    auto* dst = reinterpret_cast<int8_t*>(gather.data());
    auto* scales = reinterpret_cast<float*>(gather.data() + n * H_ + (64 - (n * H_) % 64) % 64);
    for (int64_t i = 0; i < n; ++i) {
      const int8_t* row = own_rows ? src + i * H_ : xq + row_token[r0 + i] * H_;
      if (order)
        gather_row(reinterpret_cast<const std::byte*>(row), 1, reinterpret_cast<std::byte*>(dst + i * H_), H_, 1,
                   order);
      else
        std::memcpy(dst + i * H_, row, size_t(H_));
      scales[i] = own_rows ? src_scale[i] : xs[row_token[r0 + i]];
    }
    *row_scale = scales;
    return dst;
  }

  // A: columns [j0, j1) of the group's gate and up projections, SwiGLU'd into a_f32 (float models: the model-dtype
  // values, widened, so that B reads them without converting). The chain computes h = x w13 (rounded to the model
  // dtype, or int32 for w8a8), then swiglu (dequant_swiglu_quant for w8a8) from h: the same operations on the same
  // values, in the same order, here.
  void task_a(int64_t i) {
    const int64_t g = i < groups_ * nbI_ ? i / nbI_ : groups_;
    const int64_t blk = i < groups_ * nbI_ ? i % nbI_ : i - groups_ * nbI_;
    const int64_t W = width(g), j0 = blk * block_a_, j1 = std::min(j0 + block_a_, W), nb = j1 - j0;
    const int64_t r0 = row_begin(g), n = row_end(g) - r0;
    const bool gather_needed = !int8_ || (!is_shared(g) && !w_.smooth_scale1.defined()) || input_order(g) != nullptr;
    Scratch<std::byte> gather(gather_needed ? n * H_ * (int8_ ? 1 : 4) + 64 + n * 4 : 0);
    const float* row_scale = nullptr;
    const void* a = x_rows(g, gather, &row_scale);
    const gemm::PackedWeights& w = w13(g);
    float* dst = a_f32(g);
    if (!int8_) {
      Scratch<float> gate(n * block_a_), up(n * block_a_);
      float_fn_(n, H_, j0, j1, static_cast<const float*>(a), H_, w.data(), gate.data(), block_a_);
      float_fn_(n, H_, W + j0, W + j1, static_cast<const float*>(a), H_, w.data(), up.data(), block_a_);
      for (int64_t r = 0; r < n; ++r)
        rows_.swiglu[slot_](nb, gate.data() + r * block_a_, up.data() + r * block_a_, dst + r * W + j0);
    } else if (int4_int8_) {
      // The chain's h is the kernel's fp32 output; its dequant_swiglu_quant computes silu(gate) * up (the f32
      // swiglu), and the smooth scale 2 product happens in Q's quantisation, as the operator does it.
      Scratch<float> gate(n * block_a_), up(n * block_a_);
      const auto* aq = static_cast<const int8_t*>(a);
      u4s8_fn_(n, H_, j0, j1, aq, H_, row_scale, w.data(), gate.data(), block_a_);
      u4s8_fn_(n, H_, W + j0, W + j1, aq, H_, row_scale, w.data(), up.data(), block_a_);
      for (int64_t r = 0; r < n; ++r)
        rows_.swiglu[0](nb, gate.data() + r * block_a_, up.data() + r * block_a_, dst + r * W + j0);
    } else {
      Scratch<int32_t> gate(n * block_a_), up(n * block_a_);
      const auto* aq = static_cast<const int8_t*>(a);
      s8_fn_(n, H_, j0, j1, aq, H_, static_cast<const int8_t*>(w.data()), w.col_sums(), gate.data(), block_a_);
      s8_fn_(n, H_, W + j0, W + j1, aq, H_, static_cast<const int8_t*>(w.data()), w.col_sums(), up.data(), block_a_);
      const float* ws = is_shared(g) ? w_.shared_w13_scale.data_as<const float>()
                                     : w_.w13_scale.data_as<const float>() + expert(g) * 2 * I_;
      if (clip_) {
        // w8a8c8: the chain's grouped_matmul writes h in bf16 (its int8 epilogue, then one rounding), and
        // swiglu_clip_quant computes silu(gate) * up in fp32 from those values; the clip needs the whole row (its
        // max), so it waits for Q.
        Scratch<float> hg(nb), hu(nb);
        for (int64_t r = 0; r < n; ++r) {
          rows_.dequant(nb, gate.data() + r * block_a_, ws + j0, row_scale[r], hg.data());
          rows_.dequant(nb, up.data() + r * block_a_, ws + W + j0, row_scale[r], hu.data());
          clipk_.round_bf16(nb, hg.data());
          clipk_.round_bf16(nb, hu.data());
          rows_.swiglu[0](nb, hg.data(), hu.data(), dst + r * W + j0);
        }
      } else {
        const float* smooth2 = !is_shared(g) && w_.smooth_scale2.defined()
                                   ? w_.smooth_scale2.data_as<const float>() + expert(g) * I_
                                   : nullptr;
        for (int64_t r = 0; r < n; ++r)
          rows_.dequant_swiglu(nb, gate.data() + r * block_a_, up.data() + r * block_a_, ws + j0, ws + W + j0,
                               row_scale[r], smooth2 ? smooth2 + j0 : nullptr, dst + r * W + j0);
      }
    }
    finished(g);
  }

  int32_t a_tasks(int64_t g) const { return int32_t(is_shared(g) ? nbIs_ : nbI_); }

  // Q (w8a8): each SwiGLU row of the group quantised as dequant_swiglu_quant does.
  void task_q(int64_t g) {
    wait_for(g, a_tasks(g));
    const int64_t W = width(g), r0 = row_begin(g), n = row_end(g) - r0;
    float* src = a_f32(g);
    int8_t* q = (is_shared(g) ? b_.shared_a_q.data_as<int8_t>() : b_.a_q.data_as<int8_t>()) + r0 * W;
    float* scale = (is_shared(g) ? b_.shared_a_scale.data_as<float>() : b_.a_scale.data_as<float>()) + r0;
    // w4a8: smooth scale 2 multiplies here (w8a8's dequant_swiglu kernel applied it already in A).
    const float* smooth2 = int4_int8_ && !is_shared(g) && w_.smooth_scale2.defined()
                               ? w_.smooth_scale2.data_as<const float>() + expert(g) * I_
                               : nullptr;
    // w8a8c8: swiglu_clip_quant's clip of each row to alpha times its largest magnitude (the expert's clip factor;
    // 1 for the shared expert), in its order, before the same quantisation.
    const float alpha = !clip_ || is_shared(g) ? 1.0f : w_.clip_alpha.data_as<const float>()[expert(g)];
    for (int64_t r = 0; r < n; ++r) {
      float* row = src + r * W;
      if (clip_) clipk_.clip(W, alpha, row);
      scale[r] = rows_.quantize[0](W, row, smooth2, row, q + r * W);
    }
    finished(E_ + 1 + g);
  }

  // B: columns [h0, h1) of the group's down projection, into y (shared_y for the shared expert).
  void task_b(int64_t g, int64_t blk) {
    if (int8_) wait_for(E_ + 1 + g, 1);
    else wait_for(g, a_tasks(g));
    const int64_t W = width(g), h0 = blk * block_b_, h1 = std::min(h0 + block_b_, H_), nb = h1 - h0;
    const int64_t r0 = row_begin(g), n = row_end(g) - r0;
    const gemm::PackedWeights& w = w2(g);
    const Tensor& y = is_shared(g) ? b_.shared_y : b_.y;
    auto* out = static_cast<std::byte*>(y.data());
    const int64_t es = int64_t(dtype_size(model_));
    if (!int8_) {
      Scratch<float> acc(n * block_b_);
      float_fn_(n, W, h0, h1, a_f32(g), W, w.data(), acc.data(), block_b_);
      for (int64_t r = 0; r < n; ++r) store_row(acc.data() + r * block_b_, nb, model_, out + ((r0 + r) * H_ + h0) * es);
    } else if (int4_int8_) {
      Scratch<float> acc(n * block_b_);
      const int8_t* aq = (is_shared(g) ? b_.shared_a_q.data_as<const int8_t>() : b_.a_q.data_as<const int8_t>()) + r0 * W;
      const float* a_scale =
          (is_shared(g) ? b_.shared_a_scale.data_as<const float>() : b_.a_scale.data_as<const float>()) + r0;
      u4s8_fn_(n, W, h0, h1, aq, W, a_scale, w.data(), acc.data(), block_b_);
      for (int64_t r = 0; r < n; ++r) store_row(acc.data() + r * block_b_, nb, model_, out + ((r0 + r) * H_ + h0) * es);
    } else {
      Scratch<int32_t> acc(n * block_b_);
      Scratch<float> v(nb);
      const int8_t* aq = (is_shared(g) ? b_.shared_a_q.data_as<const int8_t>() : b_.a_q.data_as<const int8_t>()) + r0 * W;
      const float* a_scale =
          (is_shared(g) ? b_.shared_a_scale.data_as<const float>() : b_.a_scale.data_as<const float>()) + r0;
      const float* ws = (is_shared(g) ? w_.shared_w2_scale.data_as<const float>()
                                      : w_.w2_scale.data_as<const float>() + expert(g) * H_) + h0;
      s8_fn_(n, W, h0, h1, aq, W, static_cast<const int8_t*>(w.data()), w.col_sums(), acc.data(), block_b_);
      for (int64_t r = 0; r < n; ++r) {
        rows_.dequant(nb, acc.data() + r * block_b_, ws, a_scale[r], v.data());  // grouped_matmul's int8 epilogue
        store_row(v.data(), nb, model_, out + ((r0 + r) * H_ + h0) * es);
      }
    }
    finished(2 * (E_ + 1));
  }

  // C: out[t, c0:c1) = skip + sum over k, in slot order, of weight[t, k] * y[row of (t, k)] (finalize_routing's
  // order), the skip being the shared expert's output (sigmoid-gated and rounded for qwen2_moe).
  void task_c(int64_t i) {
    wait_for(2 * (E_ + 1), int32_t(nB_));
    const int64_t blocks = ceil_div(H_, kCombineBlock);
    const int64_t t = i / blocks, c0 = (i % blocks) * kCombineBlock, c1 = std::min(c0 + kCombineBlock, H_);
    const int64_t nb = c1 - c0;
    Scratch<float> acc(nb);
    const int64_t es = int64_t(dtype_size(model_));
    bool started = Is_ > 0;
    if (started) {
      const auto* sy = static_cast<const std::byte*>(b_.shared_y.data()) + (t * H_ + c0) * es;
      if (c_.shared_expert_gated())
        rows_.scale_round[slot_](nb, sy, sigmoid_gate(b_.shared_gate_logit.data_as<const float>()[t]), acc.data());
      else
        widen_row(sy, model_, nb, 1, acc.data());
    }
    const int32_t* slot_row = b_.slot_row.data_as<const int32_t>();
    const Tensor& scales = routed_.scales;
    const auto* y = static_cast<const std::byte*>(b_.y.data());
    for (int64_t k = 0; k < K_; ++k) {
      const int64_t d = slot_row[t * K_ + k];
      const float s = load_element_f32(scales.data(), scales.dtype(), t * scales.stride(0) + k * scales.stride(1));
      rows_.combine[slot_](nb, y + (d * H_ + c0) * es, s, started, acc.data());
      started = true;
    }
    store_row(acc.data(), nb, model_, static_cast<std::byte*>(out_.data()) + (t * H_ + c0) * int64_t(dtype_size(model_)));
  }

  const MoeConfig& c_;
  const LayerWeights& w_;
  const Tensor& x_;
  const Tensor& out_;
  FusedBuffers& b_;
  const Routed& routed_;
  const int64_t T_, H_, I_, E_, K_, Is_;
  const bool experts_only_;
  const DType model_;
  const int slot_;  // the model dtype's index in the rows kernels
  const bool int8_;       // int8 activations: w8a8, w8a8c8 and w4a8
  const bool int4_int8_;  // w4a8: int4 weights on the int4 x int8 kernel
  const bool clip_;       // w8a8c8: h rounded to bf16, SwiGLU clipped per row before Q (swiglu_clip_quant)
  const bool fp8_;        // FP8 weights (one byte) on the FP8 kernel: the float path
  const rows::RowsKernels& rows_;
  const SwigluClipKernels clipk_;  // w8a8c8: swiglu_clip_quant's bf16 round trip and clip, at the rows' level
  gemm::GemmFloatFn float_fn_ = nullptr;
  gemm::GemmS8Fn s8_fn_ = nullptr;
  gemm::GemmU4S8Fn u4s8_fn_ = nullptr;
  std::span<const gemm::PackedWeights* const> w13_, w2_;
  const gemm::PackedWeights* shared_w13_ = nullptr;
  const gemm::PackedWeights* shared_w2_ = nullptr;
  int64_t groups_ = 0, all_groups_ = 0;
  int64_t block_a_ = 64, block_b_ = 64;
  int64_t nbI_ = 0, nbIs_ = 0, nbH_ = 0, nA_ = 0, nQ_ = 0, nB_ = 0, nC_ = 0;
  std::atomic<bool> failed_{false};
  int spin_micros_ = ThreadPool::kDefaultSpinMicros;
};

}  // namespace

std::string fused_decode_declines(const MoeConfig& c) {
  if (c.fp8_activations != Fp8Activations::none)
    return "fp8 activations (" + std::string(fp8_activations_name(c.fp8_activations)) + ") run on the operator chain";
  if (c.moe_intermediate_size % gemm::kGemmNR != 0)
    return "I=" + std::to_string(c.moe_intermediate_size) + " is not a multiple of " + std::to_string(gemm::kGemmNR);
  if (c.shared_expert_width() % gemm::kGemmNR != 0)
    return "the shared expert's width " + std::to_string(c.shared_expert_width()) + " is not a multiple of " +
           std::to_string(gemm::kGemmNR);
  return "";
}

FusedBuffers plan_fused_expert_buffers(const MoeConfig& c, int64_t rows) {
  FusedBuffers b;
  b.capacity = rows;
  const int64_t E = c.num_experts, I = c.moe_intermediate_size;
  b.row_token = Tensor::empty(DType::i32, {rows});
  b.group_expert = Tensor::empty(DType::i32, {E + 1});
  b.group_begin = Tensor::empty(DType::i64, {E + 2});
  b.a_f32 = Tensor::empty(DType::f32, {rows, I});
  if (int8_activations(c.quant_mode)) {
    b.a_q = Tensor::empty(DType::i8, {rows, I});
    b.a_scale = Tensor::empty(DType::f32, {rows});
  }
  b.counters = Tensor::empty(DType::i32, {2 * (E + 1) + 1});
  return b;
}

void fused_buffer_specs(const MoeConfig& c, int64_t capacity, FusedBuffers& b, const BufferSpecFn& each) {
  const int64_t T = capacity, R = T * c.num_experts_per_tok, H = c.hidden_size, I = c.moe_intermediate_size;
  const int64_t E = c.num_experts, Is = c.shared_expert_width();
  const bool int8 = int8_activations(c.quant_mode);
  routing_buffer_specs(c, capacity, b.routing, each);
  each(b.slot_row, DType::i32, {R});
  each(b.row_token, DType::i32, {R});
  each(b.group_expert, DType::i32, {E + 1});
  each(b.group_begin, DType::i64, {E + 2});
  if (int8) {
    each(b.x_q, DType::i8, {R, H});
    each(b.x_scale, DType::f32, {R});
    each(b.a_q, DType::i8, {R, I});
    each(b.a_scale, DType::f32, {R});
  }
  each(b.a_f32, DType::f32, {R, I});
  each(b.y, c.dtype, {R, H});
  if (Is > 0) {
    if (int8) {
      each(b.shared_x_q, DType::i8, {T, H});
      each(b.shared_x_scale, DType::f32, {T});
      each(b.shared_a_q, DType::i8, {T, Is});
      each(b.shared_a_scale, DType::f32, {T});
    }
    each(b.shared_a_f32, DType::f32, {T, Is});
    each(b.shared_y, c.dtype, {T, H});
    if (c.shared_expert_gated()) each(b.shared_gate_logit, DType::f32, {T, 1});
  }
  each(b.counters, DType::i32, {2 * (E + 1) + 1});
}

FusedBuffers plan_fused_buffers(const MoeConfig& config, int64_t capacity) {
  FusedBuffers b;
  b.capacity = capacity;
  fused_buffer_specs(config, capacity, b,
                     [](Tensor& t, DType dt, const Shape& shape) { t = Tensor::empty(dt, shape); });
  return b;
}

int64_t fused_buffer_bytes(const MoeConfig& config, int64_t capacity) {
  return planned_bytes<FusedBuffers>(config, capacity, fused_buffer_specs);
}

void run_fused_decode(const MoeConfig& config, const LayerWeights& weights, const PackedLayerWeights& packed,
                      const Tensor& x, const Tensor& out, FusedBuffers& buffers, ThreadPool& pool,
                      LayerTimings& timings, LayerRouting* routing_out) {
  const int64_t T = x.size(0);
  if (T == 0) return;
  const Routed routed = route_tokens(operator_chain_ops(packed.kernels.gemm.numerics), config, weights, &packed, x, buffers.routing, timings);
  if (routing_out) *routing_out = LayerRouting{routed.topk_idx, routed.scales};

  auto t0 = Clock::now();
  Step step(config, weights, packed, x, out, buffers, routed);
  step.prepare();
  if (config.shared_expert_gated()) {
    const Tensor gate_logit = buffers.shared_gate_logit.narrow(0, 0, T);
    router_logits(packed.kernels.gemm, x, packed.shared_gate, gate_logit);
  }
  const int64_t n = step.tasks(pool);
  timings.routing += ms_since(t0);

  t0 = Clock::now();
  pool.parallel_for(n, [&](int64_t i) { step.run(i); });
  timings.experts += ms_since(t0);
}

void run_fused_experts(const MoeConfig& config, const LayerWeights& weights, const PackedLayerWeights& packed,
                       const Tensor& x, const Tensor& x_scale, std::span<const int64_t> group_rows, const Tensor& y,
                       FusedBuffers& buffers, ThreadPool& pool) {
  const int64_t R = x.size(0);
  if (R == 0) return;
  int32_t* group_expert = buffers.group_expert.data_as<int32_t>();
  int64_t* group_begin = buffers.group_begin.data_as<int64_t>();
  int64_t groups = 0, row = 0;
  for (size_t e = 0; e < group_rows.size(); ++e) {
    if (group_rows[e] == 0) continue;
    group_expert[groups] = int32_t(e);
    group_begin[groups++] = row;
    row += group_rows[e];
  }
  group_begin[groups] = row;
  int32_t* row_token = buffers.row_token.data_as<int32_t>();
  for (int64_t r = 0; r < R; ++r) row_token[r] = int32_t(r);
  buffers.y = y;
  if (int8_activations(config.quant_mode)) {  // int8 rows
    buffers.x_q = x;
    buffers.x_scale = x_scale;
  }
  const Routed none{};
  Step step(config, weights, packed, x, y, buffers, none, /*experts_only=*/true);
  step.use_groups(groups);
  const int64_t n = step.tasks(pool);
  pool.parallel_for(n, [&](int64_t i) { step.run(i); });
}

}  // namespace moefuse::layer
