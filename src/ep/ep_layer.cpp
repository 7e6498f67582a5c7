// ExpertParallelLayer (moefuse/ep.h): the layer's chain with its routed experts on other ranks. The steps are the
// chain's own (layer/chain.h: route_tokens, expand_tokens, run_mlp, run_shared_expert, the combine operator);
// this file only moves rows between them.
#include <algorithm>
#include <cstring>
#include <exception>

#include "base/check.h"
#include "base/default_pool.h"
#include "base/timing.h"
#include "ep/comm.h"
#include "ep/dispatch_plan.h"
#include "ep/load.h"
#include "layer/act_order.h"
#include "layer/chain.h"
#include "layer/fused_decode.h"
#include "layer/packed_weights.h"
#include "moefuse/ep.h"
#include "moefuse/error.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "ExpertParallelLayer";

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A contiguous MPI datatype of `bytes` bytes: one row record, so that counts stay row counts.
class RecordType {
 public:
  explicit RecordType(int64_t bytes) {
    MPI_Type_contiguous(int(std::max<int64_t>(bytes, 1)), MPI_BYTE, &type_);
    MPI_Type_commit(&type_);
  }
  ~RecordType() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (type_ != MPI_DATATYPE_NULL && !finalised) MPI_Type_free(&type_);
  }
  RecordType(RecordType&& o) noexcept : type_(o.type_) { o.type_ = MPI_DATATYPE_NULL; }
  RecordType& operator=(RecordType&&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// `t` with at least `rows` rows of `width` (reallocated when smaller; contents not kept).
void ensure_rows(Tensor& t, DType dtype, int64_t rows, int64_t width) {
  if (!t.defined() || t.size(0) < rows) t = Tensor::empty(dtype, {std::max<int64_t>(rows, 1), width});
}
void ensure_rows(Tensor& t, DType dtype, int64_t rows) {
  if (!t.defined() || t.size(0) < rows) t = Tensor::empty(dtype, {std::max<int64_t>(rows, 1)});
}

// dst (a contiguous view) = src, same dtype and shape.
void copy_into(const Tensor& src, const Tensor& dst) {
  const Tensor c = src.contiguous();
  std::memcpy(dst.data(), c.data(), size_t(c.numel()) * c.element_size());
}

int64_t bytes_to_others(const std::vector<int>& rows, int self, int64_t record_bytes) {
  int64_t n = 0;
  for (size_t r = 0; r < rows.size(); ++r)
    if (int(r) != self) n += int64_t(rows[r]);
  return n * record_bytes;
}

}  // namespace

struct ExpertParallelLayer::Impl {
  MoeConfig config;
  ep::Comm comm;
  ExpertPlacement placement;
  std::vector<int64_t> local;  // experts held here, ascending
  int threads = 1;
  LayerWeights weights;        // router, bias, smooth scale 1, shared gate; the local experts' scales
  layer::PackedLayerWeights packed;
  RecordType dispatch_type, combine_type;
  int64_t dispatch_bytes, combine_bytes;  // bytes of one record each way
  bool quant;                  // int8 activations (w8a8, w8a8c8, w4a8): rows travel as int8 with their scale
  std::string fused_declines;  // why the fused path cannot run this config ("" when it can)
  std::string path = "chain";  // the path of the experts in the last forward that had tokens anywhere
  EpTimings timings;
  std::vector<int64_t> expert_tokens, cumulative;
  // Buffers, grown as needed.
  layer::ChainBuffers chain;   // routing, expanded rows, shared expert and y (the home rank's rows' outputs)
  Tensor counts;               // [E] i64: rows per expert of this round's tokens
  std::vector<std::byte> send, recv, back_send, back_recv;
  Tensor local_x, local_scale, local_groups, h, a, a_scale, y;
  layer::FusedBuffers fused_buffers;  // the fused path's expert buffers (rows)

  Impl(const MoeConfig& c, ep::Loaded&& l)
      : config(c), comm(std::move(l.comm)), placement(std::move(l.placement)), local(std::move(l.local)),
        threads(l.threads), weights(std::move(l.weights)), packed(std::move(l.packed)), dispatch_type(record_bytes_in(c)), combine_type(c.hidden_size * dtype_size(c.dtype)),
        dispatch_bytes(record_bytes_in(c)), combine_bytes(c.hidden_size * int64_t(dtype_size(c.dtype))),
        quant(int8_activations(c)), fused_declines(layer::fused_decode_declines(c)), expert_tokens(size_t(c.num_experts), 0),
        cumulative(size_t(c.num_experts), 0) {
    counts = Tensor::zeros(DType::i64, {c.num_experts});
  }

  static bool int8_activations(const MoeConfig& c) { return moefuse::int8_activations(c.quant_mode); }
  // A dispatched row: H values (model dtype, or int8 followed by its f32 scale).
  static int64_t record_bytes_in(const MoeConfig& c) {
    return int8_activations(c) ? c.hidden_size + 4 : c.hidden_size * int64_t(dtype_size(c.dtype));
  }

  void round(const Tensor& x, const Tensor& out, bool fused, ThreadPool& pool, LayerTimings& lt);
  void run_experts(int64_t rows, const ep::ReceivePlan& rp, bool fused, ThreadPool& pool);
};

// y[0, rows) = this rank's experts over local_x[0, rows) (grouped by rp.group_rows): the fused path's expert tasks or
// the chain's grouped MLP, which give the same bits.
void ExpertParallelLayer::Impl::run_experts(int64_t rows, const ep::ReceivePlan& rp, bool fused, ThreadPool& pool) {
  const MoeConfig& c = config;
  const Tensor x_rows = local_x.narrow(0, 0, rows), scales = local_scale.narrow(0, 0, rows);
  const Tensor y_rows = y.narrow(0, 0, rows);
  if (fused) {
    if (fused_buffers.capacity < rows) fused_buffers = layer::plan_fused_expert_buffers(c, rows);
    layer::run_fused_experts(c, weights, packed, x_rows, quant ? scales : Tensor{}, rp.group_rows, y_rows,
                             fused_buffers, pool);
    return;
  }
  // Act order: each expert's rows in its input order (the fused path's expert tasks gather them themselves).
  if (weights.w13_perm.defined()) layer::gather_expert_rows(weights.w13_perm, rp.group_rows, x_rows);
  const int64_t El = int64_t(local.size()), I = c.moe_intermediate_size;
  local_groups = Tensor::empty(DType::i64, {El});
  std::copy(rp.group_rows.begin(), rp.group_rows.end(), local_groups.data_as<int64_t>());
  const DType h_dtype = c.quant_mode == QuantMode::w8a8   ? DType::i32
                        : c.quant_mode == QuantMode::w4a8   ? DType::f32
                        : c.quant_mode == QuantMode::w8a8c8 ? DType::bf16
                                                            : c.dtype;
  ensure_rows(h, h_dtype, rows, 2 * I);
  ensure_rows(a, quant ? DType::i8 : c.dtype, rows, I);
  ensure_rows(a_scale, DType::f32, rows);
  layer::MlpArgs m = layer::routed_expert_weights(weights, &packed);
  m.x = x_rows;
  m.x_scale = scales;
  m.group_list = local_groups;
  m.h = h.narrow(0, 0, rows);
  m.a = a.narrow(0, 0, rows);
  m.a_scale = a_scale.narrow(0, 0, rows);
  m.y = y_rows;
  layer::run_mlp(layer::operator_chain_ops(packed.kernels.gemm.numerics), c, m);
}

// One round: this rank's `x` (possibly no tokens) through the layer, with every other rank's round.
void ExpertParallelLayer::Impl::round(const Tensor& x, const Tensor& out, bool fused, ThreadPool& pool,
                                      LayerTimings& lt) {
  const MoeConfig& c = config;
  const layer::ChainOps& ops = layer::operator_chain_ops(packed.kernels.gemm.numerics);
  const int64_t T = x.size(0), K = c.num_experts_per_tok, E = c.num_experts, H = c.hidden_size, R = T * K;
  const int P = comm.size(), me = comm.rank();
  EpTimings& t = timings;

  // Route this rank's tokens and expand them into rows sorted by expert (the chain's steps 1-3).
  auto t0 = Clock::now();
  layer::Routed routed;
  Tensor ex, row_idx, ex_scale;
  if (T > 0) {
    routed = layer::route_tokens(ops, c, weights, &packed, x, chain.routing, lt);
    ex = chain.expanded_x.narrow(0, 0, R);
    row_idx = chain.expanded_row_idx.narrow(0, 0, R);
    ex_scale = chain.expanded_scale.narrow(0, 0, R);
    layer::expand_tokens(ops, c, weights, x, routed.topk_idx, 1,
                         InitRoutingV2Result{ex, row_idx, counts, ex_scale});
  } else {
    std::memset(counts.data(), 0, size_t(E) * sizeof(int64_t));
  }
  const std::vector<int64_t> my_counts(counts.data_as<const int64_t>(), counts.data_as<const int64_t>() + E);
  t.routing += ms_since(t0);

  // Dispatch: the counts (and every expert's total, for the statistics), then the rows.
  t0 = Clock::now();
  const ep::SendPlan sp = ep::plan_send(placement, me, P, my_counts);
  std::vector<int64_t> recv_count(size_t(P) * size_t(E), 0), round_tokens(static_cast<size_t>(E), 0);
  {
    std::vector<MPI_Request> rq(2);
    comm.check(MPI_Ialltoall(sp.count.data(), int(E), MPI_INT64_T, recv_count.data(), int(E), MPI_INT64_T,
                             comm.get(), &rq[0]),
               "dispatch (counts)");
    comm.check(MPI_Iallreduce(my_counts.data(), round_tokens.data(), int(E), MPI_INT64_T, MPI_SUM, comm.get(), &rq[1]),
               "dispatch (counts)");
    comm.wait(rq, "dispatch (counts)");
  }
  for (int64_t e = 0; e < E; ++e) expert_tokens[size_t(e)] += round_tokens[size_t(e)];
  const ep::ReceivePlan rp = ep::plan_receive(recv_count, local, P, E);
  const int64_t Rl = int64_t(rp.record_of.size());
  send.resize(size_t(std::max<int64_t>(R, 1) * dispatch_bytes));
  recv.resize(size_t(std::max<int64_t>(Rl, 1) * dispatch_bytes));
  {
    const auto* src = static_cast<const std::byte*>(T > 0 ? ex.data() : nullptr);
    const int64_t row_bytes = quant ? H : dispatch_bytes;
    for (int64_t k = 0; k < R; ++k) {
      const int64_t r = sp.row_of[size_t(k)];
      std::byte* dst = send.data() + k * dispatch_bytes;
      std::memcpy(dst, src + r * row_bytes, size_t(row_bytes));
      if (quant) std::memcpy(dst + H, ex_scale.data_as<const float>() + r, sizeof(float));
    }
  }
  std::vector<MPI_Request> rq(1);
  comm.check(MPI_Ialltoallv(send.data(), sp.rows.data(), sp.displ.data(), dispatch_type.get(), recv.data(),
                            rp.rows.data(), rp.displ.data(), dispatch_type.get(), comm.get(), &rq[0]),
             "dispatch (rows)");
  const double before_shared = ms_since(t0);

  // The shared expert while the rows are in flight (the seed's second stream).
  t0 = Clock::now();
  const Tensor skip1 = layer::run_shared_expert(ops, c, weights, &packed, x, chain);
  t.shared += ms_since(t0);

  t0 = Clock::now();
  comm.wait(rq, "dispatch (rows)");
  t.dispatch += before_shared + ms_since(t0);
  t.rows_sent += R;
  t.rows_received += Rl;
  t.dispatch_bytes_out += bytes_to_others(sp.rows, me, dispatch_bytes);
  t.dispatch_bytes_in += bytes_to_others(rp.rows, me, dispatch_bytes);

  // This rank's experts over the rows it received, grouped by expert (the chain's step 4, or the fused path's
  // expert tasks when the single-process layer would run the fused path).
  t0 = Clock::now();
  back_send.resize(size_t(std::max<int64_t>(Rl, 1) * combine_bytes));
  if (Rl > 0) {
    ensure_rows(local_x, quant ? DType::i8 : c.dtype, Rl, H);
    ensure_rows(local_scale, DType::f32, Rl);
    const int64_t row_bytes = quant ? H : dispatch_bytes;
    auto* lx = static_cast<std::byte*>(local_x.data());
    for (int64_t i = 0; i < Rl; ++i) {
      const std::byte* rec = recv.data() + int64_t(rp.record_of[size_t(i)]) * dispatch_bytes;
      std::memcpy(lx + i * row_bytes, rec, size_t(row_bytes));
      if (quant) std::memcpy(local_scale.data_as<float>() + i, rec + H, sizeof(float));
    }
    ensure_rows(y, c.dtype, Rl, H);
    run_experts(Rl, rp, fused, pool);
    const auto* yr = static_cast<const std::byte*>(y.data());
    for (int64_t i = 0; i < Rl; ++i)
      std::memcpy(back_send.data() + int64_t(rp.record_of[size_t(i)]) * combine_bytes, yr + i * combine_bytes,
                  size_t(combine_bytes));
  }
  t.experts += ms_since(t0);

  // Combine: the outputs back to their home ranks, put at the rows they came from, then the chain's step 6.
  t0 = Clock::now();
  back_recv.resize(size_t(std::max<int64_t>(R, 1) * combine_bytes));
  comm.check(MPI_Ialltoallv(back_send.data(), rp.rows.data(), rp.displ.data(), combine_type.get(), back_recv.data(),
                            sp.rows.data(), sp.displ.data(), combine_type.get(), comm.get(), &rq[0]),
             "combine (rows)");
  comm.wait(rq, "combine (rows)");
  t.combine_bytes_out += bytes_to_others(rp.rows, me, combine_bytes);
  t.combine_bytes_in += bytes_to_others(sp.rows, me, combine_bytes);
  if (T > 0) {
    const Tensor yr = chain.y.narrow(0, 0, R);
    auto* dst = static_cast<std::byte*>(yr.data());
    for (int64_t k = 0; k < R; ++k)
      std::memcpy(dst + int64_t(sp.row_of[size_t(k)]) * combine_bytes, back_recv.data() + k * combine_bytes,
                  size_t(combine_bytes));
    ops.finalize_routing(yr, skip1, routed.scales, row_idx, out);
  }
  t.combine += ms_since(t0);
}

ExpertParallelLayer::ExpertParallelLayer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ExpertParallelLayer::~ExpertParallelLayer() = default;
ExpertParallelLayer::ExpertParallelLayer(ExpertParallelLayer&&) noexcept = default;
ExpertParallelLayer& ExpertParallelLayer::operator=(ExpertParallelLayer&&) noexcept = default;

ExpertParallelLayer ExpertParallelLayer::from_checkpoint(const MoeConfig& config, const Checkpoint& checkpoint,
                                                         int64_t layer_index, MPI_Comm comm,
                                                         const EpOptions& options) {
  ep::Loaded l = ep::load_rank_share(config, layer_index, comm, options, [&](ThreadPool& pool, const auto* subset) {
    return ep::checkpoint_share(config, checkpoint, layer_index, pool, options.layer.allow_non_finite_weights, subset);
  });
  return ExpertParallelLayer(std::make_unique<Impl>(config, std::move(l)));
}

ExpertParallelLayer ExpertParallelLayer::with_random_weights(const MoeConfig& config, uint64_t seed, MPI_Comm comm,
                                                             const EpOptions& options) {
  ep::Loaded l = ep::load_rank_share(config, -1, comm, options, [&](ThreadPool& pool, const auto* subset) {
    return ep::random_share(config, seed, pool, subset);
  });
  return ExpertParallelLayer(std::make_unique<Impl>(config, std::move(l)));
}

Tensor ExpertParallelLayer::forward(const Tensor& x, bool is_prefill, LayerRouting* routing) {
  check::rank(kOp, "x", x, 2);
  Tensor out = Tensor::empty(impl_->config.dtype, {x.size(0), impl_->config.hidden_size});
  forward_out(x, is_prefill, out, routing);
  return out;
}

void ExpertParallelLayer::forward_out(const Tensor& x, bool is_prefill, const Tensor& out,
                                      LayerRouting* routing) {
  Impl& m = *impl_;
  const MoeConfig& c = m.config;
  const auto start = Clock::now();
  // Checks x and out; the verdict goes round with the round count, so that a refused input fails every rank now
  // (its own error on this rank) instead of leaving the others waiting.
  std::exception_ptr refused;
  try {
    check::rank(kOp, "x", x, 2);
    check::dtype_in(kOp, "x", x, {c.dtype});
    if (x.size(1) != c.hidden_size)
      check::fail_value(kOp, "x", "shape [T, " + std::to_string(c.hidden_size) + "] (hidden_size)", x.shape().str());
    check::output(kOp, "out", out, c.dtype, {x.size(0), c.hidden_size});
  } catch (const Error&) {
    refused = std::current_exception();
  }
  const int64_t T = refused ? 0 : x.size(0), chunk = c.moe_chunk_max_len;
  const std::vector<uint64_t> all =
      m.comm.allgather({uint64_t(ceil_div(T, chunk)), refused ? 1u : 0u}, "forward (start)");
  int64_t rounds = 0;
  std::string bad;
  for (int r = 0; r < m.comm.size(); ++r) {
    rounds = std::max<int64_t>(rounds, int64_t(all[size_t(2 * r)]));
    if (all[size_t(2 * r + 1)]) bad += (bad.empty() ? "" : ", ") + std::to_string(r);
  }
  if (refused) std::rethrow_exception(refused);
  if (!bad.empty())
    throw ValueError(std::string(kOp) + ": forward: expected every rank's input to be accepted, got rank(s) " + bad +
                     " refusing theirs (see the error there)");

  m.timings = EpTimings{};
  m.timings.tokens = T;
  m.timings.rounds = rounds;
  std::fill(m.expert_tokens.begin(), m.expert_tokens.end(), 0);
  PoolLease lease(m.threads);  // the operators run on the layer's threads
  // The experts run the fused path where MoeLayer would (a decode step of a config it handles), else the chain.
  const bool fused_asked = c.enable_superkernel && !is_prefill, fused = fused_asked && m.fused_declines.empty();
  const int64_t capacity = std::max<int64_t>(1, std::min(T, chunk));
  if (m.chain.capacity < capacity) m.chain = layer::plan_chain_buffers(c, capacity);
  LayerTimings lt;
  if (routing)
    *routing = LayerRouting{Tensor::empty(DType::i32, {T, c.num_experts_per_tok}),
                            Tensor::empty(c.dtype, {T, c.num_experts_per_tok})};
  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t begin = std::min(T, r * chunk), len = std::min(chunk, T - begin);
    m.round(x.narrow(0, begin, len), out.narrow(0, begin, len), fused, lease.workers(), lt);
    if (routing && len > 0) {
      copy_into(m.chain.routing.topk_idx.narrow(0, 0, len), routing->topk_idx.narrow(0, begin, len));
      const Tensor& w = m.chain.routing.topk_weight_model.defined() ? m.chain.routing.topk_weight_model
                                                                    : m.chain.routing.topk_weight;
      copy_into(w.narrow(0, 0, len), routing->topk_weight.narrow(0, begin, len));
    }
  }
  m.timings.routing += lt.router + lt.gating;
  if (rounds > 0) m.path = !fused_asked ? "chain" : fused ? "superkernel" : "chain: " + m.fused_declines;
  for (int64_t e = 0; e < c.num_experts; ++e) m.cumulative[size_t(e)] += m.expert_tokens[size_t(e)];
  m.timings.total = ms_since(start);
}

const MoeConfig& ExpertParallelLayer::config() const { return impl_->config; }
int ExpertParallelLayer::threads() const { return impl_->threads; }
const std::string& ExpertParallelLayer::path() const { return impl_->path; }
int ExpertParallelLayer::rank() const { return impl_->comm.rank(); }
int ExpertParallelLayer::size() const { return impl_->comm.size(); }
const ExpertPlacement& ExpertParallelLayer::placement() const { return impl_->placement; }
const std::vector<int64_t>& ExpertParallelLayer::local_experts() const { return impl_->local; }
const EpTimings& ExpertParallelLayer::last_timings() const { return impl_->timings; }
const std::vector<int64_t>& ExpertParallelLayer::expert_tokens() const { return impl_->expert_tokens; }
const std::vector<int64_t>& ExpertParallelLayer::cumulative_expert_tokens() const { return impl_->cumulative; }

}  // namespace moefuse
