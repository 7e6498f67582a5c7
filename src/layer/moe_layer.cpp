#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "base/check.h"
#include "base/default_pool.h"
#include "base/thread_pool.h"
#include "kernels/gemm/gemm.h"
#include "layer/chain.h"
#include "layer/fp8_weights.h"
#include "layer/finite.h"
#include "layer/fused_decode.h"
#include "layer/weights.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "ops/grouped_matmul_fp8a.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "MoeLayer";

// LayerOptions::threads as a count in 1..kMaxThreads.
int resolve_threads(int threads) {
  if (threads < 0 || threads > kMaxThreads)
    check::fail_value(kOp, "threads", "0 (every core) or a count in 1.." + std::to_string(kMaxThreads),
                      std::to_string(threads));
  if (threads > 0) return threads;
  const int hw = int(std::thread::hardware_concurrency());
  return std::clamp(hw, 1, kMaxThreads);
}

// How a chunk of `len` tokens is run: decode-sized chunks as one part on the calling thread, the grouped matmuls
// spreading (expert x block) tasks over the layer's threads — splitting a few tokens between threads would have each
// thread read most of the same experts' weights, the cost of decode. From kSplitTokensPerThread tokens per thread
// on, the GEMMs are compute bound and every thread runs the whole chain on its own share of the tokens, which
// parallelises the stages around the GEMMs too.
constexpr int64_t kSplitTokensPerThread = 128;

struct Schedule {
  int64_t parts, share;  // parts of `share` tokens (the last may be shorter)
};

Schedule schedule(int64_t len, int threads) {
  if (threads <= 1 || len < kSplitTokensPerThread * threads) return Schedule{1, len};
  const int64_t share = (len + threads - 1) / threads;
  return Schedule{(len + share - 1) / share, share};
}

std::string gib(int64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(int64_t(1) << 30));
  return buf;
}

// Refuses, before anything is allocated, a layer whose weights plus the workspaces of one full chunk do not fit in
// the memory it may take, keeping a margin (a tenth of it) for the rest of the process and the system.
// `weights`: the bytes of the weights (layer_weight_bytes, or less for FP8 weights held one byte).
void check_fits(const MoeConfig& c, int threads, int64_t limit, int64_t weights) {
  const int64_t available = limit > 0 ? limit : available_memory_bytes();
  // The largest plan of any forward: a full chunk split between threads, or the largest chunk run as one part.
  const Schedule full = schedule(c.moe_chunk_max_len, threads);
  const int64_t one_part = std::min(c.moe_chunk_max_len, kSplitTokensPerThread * threads - 1);
  const int64_t largest_one_part = c.enable_superkernel ? c.moe_chunk_max_len : one_part;  // the fused path's plan
  const int64_t workspace =
      std::max(full.parts * layer_workspace_bytes(c, full.share), layer_workspace_bytes(c, largest_one_part));
  const int64_t need = weights + workspace;
  const int64_t usable = available - available / 10;
  if (need > usable)
    throw ResourceError("MoeLayer: memory: expected the layer to fit in " + std::to_string(usable) + " bytes (" +
                        gib(usable) + ": 90% of the " + std::to_string(available) + " bytes available), got " +
                        std::to_string(need) + " bytes needed (" + gib(need) + ": " + std::to_string(weights) +
                        " of weights, " + std::to_string(workspace) + " of workspace)");
}

// Bytes of an [out, in] int4 projection as packed (gemm.h): half a byte per weight, and per group of G input
// channels an f32 scale and an f32 zero bias per output channel.
int64_t int4_bytes(const MoeConfig& c, int64_t out, int64_t in) {
  return out * in / 2 + out * (in / c.quant_group_size) * 8;
}

// Bytes of one expert's two projections (w13, w2) and, quantised, their per-channel scales.
int64_t projection_bytes(const MoeConfig& c) {
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size;
  if (int4_weights(c.quant_mode)) return int4_bytes(c, 2 * I, H) + int4_bytes(c, H, I);
  const bool quant = c.quant_mode != QuantMode::none;
  return 3 * I * H * (quant ? 1 : int64_t(dtype_size(c.dtype))) + (quant ? (2 * I + H) * 4 : 0);
}

// Bytes one expert's weights take as the chain reads them: the projections and every per-expert tensor `w` holds.
int64_t expert_bytes(const MoeConfig& c, const LayerWeights& w) {
  int64_t b = projection_bytes(c);
  if (w.smooth_scale1.defined()) b += c.hidden_size * 4;
  if (w.smooth_scale2.defined()) b += c.moe_intermediate_size * 4;
  if (w.clip_alpha.defined()) b += 4;
  return b;
}

// Bytes of the weights every chunk reads whichever experts it routes to: router (+ correction bias) and the shared
// expert (+ its gate).
int64_t fixed_bytes(const MoeConfig& c) {
  const int64_t E = c.num_experts, H = c.hidden_size, Is = c.shared_expert_width();
  const bool quant = c.quant_mode != QuantMode::none;
  const int64_t ms = int64_t(dtype_size(c.dtype)), ws = quant ? 1 : ms;
  int64_t b = E * H * ms + (c.model_type == ModelType::deepseek_v3 ? E * 4 : 0);
  if (Is > 0 && int4_weights(c.quant_mode))
    return b + int4_bytes(c, 2 * Is, H) + int4_bytes(c, H, Is) + (c.shared_expert_gated() ? H * ms : 0);
  if (Is > 0) b += 3 * Is * H * ws + (quant ? (2 * Is + H) * 4 : 0) + (c.shared_expert_gated() ? H * ms : 0);
  return b;
}

// Bytes of one expert of a packed projection (every expert is packed alike); 0 when it holds none.
int64_t packed_bytes(const layer::PackedProjection& p) {
  return p.experts && p.experts->size() > 0 ? int64_t((*p.experts)[0].data_bytes()) : 0;
}

// fixed_bytes of a layer whose projections are FP8 (one byte per weight plus scales): the shared expert as packed.
int64_t fixed_bytes_fp8(const MoeConfig& c, const layer::PackedLayerWeights& p) {
  const int64_t Is = c.shared_expert_width(), ms = int64_t(dtype_size(c.dtype));
  return fixed_bytes(c) - 3 * Is * c.hidden_size * ms + packed_bytes(p.shared_w13) + packed_bytes(p.shared_w2);
}

// Rows of `src` ([n, K]) into rows [begin, begin + n) of the contiguous `dst` of the same dtype and width.
void copy_rows(const Tensor& src, const Tensor& dst, int64_t begin) {
  const Tensor c = src.contiguous();
  const size_t row = size_t(dst.size(1)) * dst.element_size();
  std::memcpy(static_cast<std::byte*>(dst.data()) + size_t(begin) * row, c.data(), size_t(c.size(0)) * row);
}

}  // namespace

// The quantised chains hold a clip factor per expert (w8a8c8's, or 1s), counted whether or not it is read.
int64_t layer_weight_bytes(const MoeConfig& c) {
  const bool int8 = c.quant_mode == QuantMode::w8a8 || c.quant_mode == QuantMode::w8a8c8;
  return fixed_bytes(c) + c.num_experts * (projection_bytes(c) + (int8 ? 4 : 0));
}

bool fp8_weights_kept_one_byte(const MoeConfig& c, const Fp8Settings& fp8) { return layer::fp8_held_one_byte(c, fp8); }

int64_t layer_weight_bytes(const MoeConfig& c, const Fp8Settings& fp8) {
  if (!fp8_weights_kept_one_byte(c, fp8)) return layer_weight_bytes(c);
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size, Is = c.shared_expert_width();
  // One byte per weight, an f32 scale per output channel and 128 input channels (the packed panels' padding aside).
  auto proj = [](int64_t out, int64_t in) { return out * in + out * layer::fp8_blocks(in) * 4; };
  auto mlp = [&](int64_t w) { return proj(2 * w, H) + proj(H, w); };
  return layer_weight_bytes(c) - (c.num_experts * I + Is) * 3 * H * int64_t(dtype_size(c.dtype)) +
         c.num_experts * mlp(I) + (Is > 0 ? mlp(Is) : 0);
}

int64_t layer_workspace_bytes(const MoeConfig& c, int64_t tokens) {
  const int64_t chain = layer::chain_buffer_bytes(c, tokens);
  if (!c.enable_superkernel || !layer::fused_decode_declines(c).empty()) return chain;
  return std::max(chain, layer::fused_buffer_bytes(c, tokens));
}

int64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? int64_t(pages) * page : 0;
}

struct MoeLayer::Impl {
  MoeConfig config;
  LayerWeights weights;  // without the projections, which live in `packed` only
  int threads;           // the most threads of the process pool a forward uses
  layer::PackedLayerWeights packed;
  std::vector<layer::ChainBuffers> buffers;  // one per part (graph mode keeps them between forwards)
  layer::FusedBuffers fused;                 // the fused decode path's (graph mode keeps them too)
  std::string fused_declines;                // why the fused path cannot run this config ("" when it can)
  std::string declined_path;                 // "chain: " + fused_declines (built once: a forward allocates nothing)
  std::vector<LayerTimings> part_timings;
  std::vector<LayerRouting> part_routing;
  std::vector<uint8_t> expert_seen;  // [E]: experts with a token in the current chunk
  std::vector<uint8_t> part_seen;    // [E]: experts with a token in the current part of it
  std::vector<int64_t> expert_tokens, cumulative_tokens;  // [E]: rows per expert, last forward and all of them
  int64_t chunk_fixed_bytes = 0;     // weights every chunk reads (fixed_bytes)
  int64_t per_expert_bytes = 0;
  LayerTimings timings;
  std::string path = "chain";
  const char* kernel = "";  // a registry name (static storage)

  Impl(const MoeConfig& c, LayerWeights w, int threads, Numerics numerics)
      : config(c), weights(std::move(w)), threads(threads), buffers(size_t(threads)), part_timings(size_t(threads)),
        part_routing(size_t(threads)), expert_seen(size_t(c.num_experts)), part_seen(size_t(c.num_experts)),
        expert_tokens(size_t(c.num_experts), 0), cumulative_tokens(size_t(c.num_experts), 0) {
    per_expert_bytes = expert_bytes(c, weights);
    chunk_fixed_bytes = fixed_bytes(c);
    // Start the workers now, so that a forward starts none (and allocates nothing).
    reserve_pool_threads(threads);
    PoolLease lease(threads);  // pack on the layer's threads
    packed = layer::pack_layer_weights(weights, numerics, c.fp8_activations);
    if (packed.fp8) {  // one byte per weight plus scales: the bytes the kernels read, as packed
      per_expert_bytes = packed_bytes(packed.w13) + packed_bytes(packed.w2);
      chunk_fixed_bytes = fixed_bytes_fp8(c, packed);
    }
    fused_declines = layer::fused_decode_declines(c);
    declined_path = "chain: " + fused_declines;
  }
};

MoeLayer::MoeLayer(const MoeConfig& config, LayerWeights weights, const LayerOptions& options)
    : MoeLayer(config, std::move(weights), options, false) {}

MoeLayer::MoeLayer(const MoeConfig& config, LayerWeights weights, const LayerOptions& options, bool fp8_form) {
  validate(config, "MoeLayer config");
  layer::validate_weights(config, weights, fp8_form);
  if (!options.allow_non_finite_weights) layer::check_finite_weights(weights);
  impl_ = std::make_unique<Impl>(config, std::move(weights), resolve_threads(options.threads),
                                 layer::resolve_numerics(options, config));
}

MoeLayer::~MoeLayer() = default;
MoeLayer::MoeLayer(MoeLayer&&) noexcept = default;
MoeLayer& MoeLayer::operator=(MoeLayer&&) noexcept = default;

namespace {

// Checks the config and that the layer fits, starts the layer's threads, then load(pool) -> LayerWeights on them.
// `weight_bytes` (when not -1) replaces layer_weight_bytes(config) in the check (FP8 weights held one byte).
template <class Load>
LayerWeights load_weights(const MoeConfig& config, const LayerOptions& options, Load&& load, int64_t weight_bytes = -1) {
  validate(config, "MoeLayer config");
  const int threads = resolve_threads(options.threads);
  layer::resolve_numerics(options, config);  // a bad MOEFUSE_NUMERICS fails before anything is read
  check_fits(config, threads, options.memory_limit_bytes, weight_bytes >= 0 ? weight_bytes : layer_weight_bytes(config));
  reserve_pool_threads(threads);
  PoolLease lease(threads);
  return load(lease.workers());
}

}  // namespace

MoeLayer MoeLayer::with_random_weights(const MoeConfig& config, uint64_t seed, const LayerOptions& options) {
  LayerWeights w = load_weights(config, options, [&](ThreadPool& pool) {
    return layer::random_weights(config, seed, pool);
  });
  LayerOptions finite = options;  // random weights are finite: no second pass over them
  finite.allow_non_finite_weights = true;
  return MoeLayer(config, std::move(w), finite);
}

MoeLayer MoeLayer::from_checkpoint(const MoeConfig& config, const Checkpoint& checkpoint, int64_t layer_index,
                                   const LayerOptions& options) {
  // An FP8 checkpoint held one byte needs about half a bf16 layer's memory: checked against that.
  validate(config, "MoeLayer config");
  const int64_t weight_bytes = layer_index >= 0 && layer::keeps_fp8_one_byte(config, checkpoint, layer_index)
                                   ? layer_weight_bytes(config, read_fp8_settings(checkpoint))
                                   : layer_weight_bytes(config);
  LayerWeights w = load_weights(
      config, options,
      [&](ThreadPool& pool) {
        return layer::checkpoint_weights(config, checkpoint, layer_index, pool, options.allow_non_finite_weights);
      },
      weight_bytes);
  LayerOptions checked = options;  // checked while loading, with the checkpoint's names: no second pass
  checked.allow_non_finite_weights = true;
  return MoeLayer(config, std::move(w), checked, /*fp8_form=*/true);
}

MoeLayer MoeLayer::with_random_fp8_weights(const MoeConfig& config, uint64_t seed, const LayerOptions& options) {
  // The float weights are made first, then converted projection by projection: both forms, at most.
  Fp8Settings blocks;
  blocks.source = "MoeLayer::with_random_fp8_weights";
  LayerWeights w = load_weights(
      config, options, [&](ThreadPool& pool) { return layer::random_fp8_weights(config, seed, pool); },
      layer_weight_bytes(config) + layer_weight_bytes(config, blocks));
  LayerOptions finite = options;  // random weights are finite: no second pass over them
  finite.allow_non_finite_weights = true;
  return MoeLayer(config, std::move(w), finite, /*fp8_form=*/true);
}

const MoeConfig& MoeLayer::config() const { return impl_->config; }
LayerWeights MoeLayer::weights() const {
  return layer::unpack_layer_weights(impl_->config, impl_->weights, impl_->packed);
}
int MoeLayer::threads() const { return impl_->threads; }
const LayerTimings& MoeLayer::last_timings() const { return impl_->timings; }
std::string MoeLayer::path() const { return impl_->path; }
std::string MoeLayer::kernel() const { return impl_->kernel; }
Numerics MoeLayer::numerics() const { return impl_->packed.kernels.gemm.numerics; }
const std::vector<int64_t>& MoeLayer::expert_tokens() const { return impl_->expert_tokens; }
const std::vector<int64_t>& MoeLayer::cumulative_expert_tokens() const { return impl_->cumulative_tokens; }

Tensor MoeLayer::forward(const Tensor& x, bool is_prefill, LayerRouting* routing) {
  check::rank(kOp, "x", x, 2);
  Tensor out = Tensor::empty(impl_->config.dtype, {x.size(0), impl_->config.hidden_size});
  forward_out(x, is_prefill, out, routing);
  return out;
}

void MoeLayer::forward_out(const Tensor& x, bool is_prefill, const Tensor& out, LayerRouting* routing) {
  // Prefill and decode run the same chunked schedule: chunks bound the workspace, and a token's result does not
  // depend on its batch nor on how the GEMMs are cut into tasks (docs/operators.md, Numerics: determinism), so neither
  // the chunking nor the schedule (schedule() above) changes a bit.
  Impl& m = *impl_;
  const MoeConfig& c = m.config;
  check::rank(kOp, "x", x, 2);
  check::dtype_in(kOp, "x", x, {c.dtype});
  if (x.size(1) != c.hidden_size)
    check::fail_value(kOp, "x", "shape [T, " + std::to_string(c.hidden_size) + "] (hidden_size)", x.shape().str());
  check::output(kOp, "out", out, c.dtype, {x.size(0), c.hidden_size});

  const auto start = std::chrono::steady_clock::now();
  const int64_t T = x.size(0);
  // The process pool under this layer's limit (its operators' leases get the same); the calling thread alone while
  // another thread holds the pool.
  PoolLease lease(m.threads);
  ThreadPool& pool = lease.workers();
  const int threads = pool.size();
  // Routing runs on this thread before the first loop over the experts (15-25 us at T = 1): workers asleep since the
  // last forward (a model's attention in between outlasts the pool's spin) are woken now, so that their wake-up
  // overlaps it instead of delaying the first tasks (docs/performance.md, "Decode outside the weight stream").
  if (T > 0) pool.prewake();
  const bool graph = c.exe_mode == ExeMode::ge_graph;
  // Decode runs the fused path when the config asks for it and it handles the config (fused_decode.h).
  const bool fused_asked = c.enable_superkernel && !is_prefill;
  const bool fused = fused_asked && m.fused_declines.empty();
  const Schedule first =
      fused ? Schedule{1, std::min(T, c.moe_chunk_max_len)} : schedule(std::min(T, c.moe_chunk_max_len), threads);
  for (size_t i = 0; i < m.buffers.size(); ++i) {
    layer::ChainBuffers& b = m.buffers[size_t(i)];
    // Graph mode plans once per bound and reuses; eager mode plans for this forward only.
    if (!fused && int64_t(i) < first.parts && T > 0 && (!graph || b.capacity < first.share))
      b = layer::plan_chain_buffers(c, first.share);
    m.part_timings[i] = LayerTimings{};
  }
  if (fused && T > 0 && (!graph || m.fused.capacity < first.share)) m.fused = layer::plan_fused_buffers(c, first.share);
  int64_t chunks = 0, weight_bytes = 0, active = 0;
  std::fill(m.expert_tokens.begin(), m.expert_tokens.end(), 0);
  LayerRouting all_routing;
  if (routing)
    all_routing = LayerRouting{Tensor::empty(DType::i32, {T, c.num_experts_per_tok}),
                               Tensor::empty(c.dtype, {T, c.num_experts_per_tok})};
  for (int64_t c0 = 0; c0 < T; c0 += c.moe_chunk_max_len) {
    const int64_t len = std::min(c.moe_chunk_max_len, T - c0);
    const Schedule s = fused ? Schedule{1, len} : schedule(len, threads);
    auto run_part = [&](int64_t p) {
      if (fused) {
        layer::run_fused_decode(c, m.weights, m.packed, x.narrow(0, c0, len), out.narrow(0, c0, len), m.fused,
                                pool, m.part_timings[0], &m.part_routing[0]);
        return;
      }
      const int64_t begin = c0 + p * s.share, n = std::min(s.share, c0 + len - begin);
      layer::run_chain(layer::operator_chain_ops(m.packed.kernels.gemm.numerics), c, m.weights, &m.packed, x.narrow(0, begin, n),
                       out.narrow(0, begin, n), m.buffers[size_t(p)], &m.part_timings[size_t(p)],
                       &m.part_routing[size_t(p)]);
    };
    if (s.parts == 1) run_part(0);
    else pool.parallel_for(s.parts, run_part);
    // The weights this chunk read: the distinct experts routed to (active_experts), and the bytes each part read —
    // a part runs the whole chain on its tokens, so it reads the fixed weights and each expert it routes to again.
    std::fill(m.expert_seen.begin(), m.expert_seen.end(), uint8_t(0));
    for (int64_t p = 0; p < s.parts; ++p) {
      std::fill(m.part_seen.begin(), m.part_seen.end(), uint8_t(0));
      const Tensor& idx = m.part_routing[size_t(p)].topk_idx;
      if (routing) {  // the parts' rows, in token order
        const int64_t begin = c0 + p * s.share;
        copy_rows(idx, all_routing.topk_idx, begin);
        copy_rows(m.part_routing[size_t(p)].topk_weight, all_routing.topk_weight, begin);
      }
      const int32_t* e = idx.data_as<const int32_t>();
      for (int64_t i = 0; i < idx.numel(); ++i)
        if (e[i] >= 0 && e[i] < c.num_experts) {
          m.expert_seen[size_t(e[i])] = m.part_seen[size_t(e[i])] = 1;
          ++m.expert_tokens[size_t(e[i])];
        }
      const int64_t part_active = std::count(m.part_seen.begin(), m.part_seen.end(), uint8_t(1));
      weight_bytes += m.chunk_fixed_bytes + part_active * m.per_expert_bytes;
    }
    active += std::count(m.expert_seen.begin(), m.expert_seen.end(), uint8_t(1));
    ++chunks;
  }
  for (size_t e = 0; e < m.expert_tokens.size(); ++e) m.cumulative_tokens[e] += m.expert_tokens[e];
  if (!graph) {
    for (layer::ChainBuffers& b : m.buffers) b = layer::ChainBuffers{};
    m.fused = layer::FusedBuffers{};
  }

  LayerTimings t;
  int used = 0;
  for (const LayerTimings& tt : m.part_timings) {
    if (tt.router + tt.gating + tt.routing + tt.experts + tt.shared + tt.combine == 0) continue;
    t.router += tt.router;
    t.gating += tt.gating;
    t.routing += tt.routing;
    t.experts += tt.experts;
    t.shared += tt.shared;
    t.combine += tt.combine;
    ++used;
  }
  if (used > 1) {
    t.router /= used;
    t.gating /= used;
    t.routing /= used;
    t.experts /= used;
    t.shared /= used;
    t.combine /= used;
  }
  t.tokens = T;
  t.chunks = chunks;
  t.weight_bytes = weight_bytes;
  if (T > 0 && fused_asked && !fused) m.path = m.declined_path;  // (no temporary string: a forward allocates nothing)
  else if (T > 0) m.path = fused ? "superkernel" : "chain";
  if (T > 0) {
    // What the expert GEMMs dispatched to: the fused path runs the kernels chosen when the layer was packed, the
    // chain's grouped matmuls choose theirs (in the layer's tier) at each call.
    const gemm::GemmKernels k =
        fused ? m.packed.kernels.gemm : gemm::select_gemm_kernels(m.packed.kernels.gemm.numerics);
    m.kernel = m.packed.fp8_activations          ? fp8_act_kernel_name()
               : m.packed.fp8                      ? k.fp8w.name
               : c.quant_mode == QuantMode::none  ? k.float_kernel(c.dtype).name
               : c.quant_mode == QuantMode::w4a16 ? k.kernel_for((*m.packed.w13.experts)[0]).name
               : c.quant_mode == QuantMode::w4a8  ? k.u4s8_kernel_for((*m.packed.w13.experts)[0]).name
                                                  : k.s8.name;
  }
  t.active_experts = active;
  if (routing) *routing = std::move(all_routing);
  t.total = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  m.timings = t;
}

std::string layer_checkpoint_prefix(const MoeConfig& config, int64_t layer_index) {
  return layer::moe_prefix(config, layer_index);
}

NamedTensors layer_checkpoint_tensors(const MoeConfig& config, const LayerWeights& weights, int64_t layer_index) {
  return layer::checkpoint_tensors(config, weights, layer_index);
}

}  // namespace moefuse
