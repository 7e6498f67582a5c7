#include "layer/chain.h"

#include <chrono>
#include <cmath>

#include "base/elements.h"
#include "base/timing.h"
#include "layer/act_order.h"
#include "layer/router.h"

namespace moefuse::layer {
namespace {

struct Dims {
  int64_t H, I, E, K, Is;
  DType model;
  QuantMode quant;
};

Dims dims_of(const MoeConfig& c) {
  return Dims{c.hidden_size, c.moe_intermediate_size, c.num_experts, c.num_experts_per_tok, c.shared_expert_width(),
              c.dtype, c.quant_mode};
}

// dtype of h, the first grouped matmul's output: the int32 accumulator (w8a8, dequantised by
// dequant_swiglu_quant), fp32 (w4a8, dequantised by the int4 x int8 kernel itself), bf16 (w8a8c8, whose
// swiglu_clip_quant reads bf16), or the model dtype.
DType h_dtype(const Dims& d) {
  if (d.quant == QuantMode::w8a8) return DType::i32;
  if (d.quant == QuantMode::w4a8) return DType::f32;
  if (d.quant == QuantMode::w8a8c8) return DType::bf16;
  return d.model;
}

bool int8_activations(const Dims& d) { return moefuse::int8_activations(d.quant); }

// Counts as key-value rows for w8a8 and w4a8 (as the seed's W8A8 chain), per-expert counts otherwise.
int64_t count_type(const Dims& d) { return d.quant == QuantMode::w8a8 || d.quant == QuantMode::w4a8 ? 2 : 1; }

Shape counts_shape(const Dims& d, int64_t experts) {
  return count_type(d) == 2 ? Shape{experts, 2} : Shape{experts};
}


// A [rows, ...] view of the leading `n` rows.
Tensor rows(const Tensor& t, int64_t n) { return t.narrow(0, 0, n); }

// An MLP's work tensors: the first n rows of each of its buffers.
void set_work_rows(MlpArgs& m, const Tensor& h, const Tensor& a, const Tensor& a_scale, const Tensor& y, int64_t n) {
  m.h = rows(h, n);
  m.a = rows(a, n);
  m.a_scale = rows(a_scale, n);
  m.y = rows(y, n);
}

}  // namespace

void run_mlp(const ChainOps& ops, const MoeConfig& config, const MlpArgs& m) {
  const Dims d = dims_of(config);
  GroupedMatmulOptions g1, g2;
  const bool grouped = m.group_list.defined();
  if (grouped) {
    g1.group_type = 0;
    g1.group_list = m.group_list;
    g1.group_list_type = m.group_list.dim() == 2 ? 2 : 1;
  }
  g2.group_type = g1.group_type;
  g2.group_list = g1.group_list;
  g2.group_list_type = g1.group_list_type;
  auto gmm13 = [&](const Tensor& x, const GroupedMatmulOptions& o, const Tensor& y) {
    ops.grouped_matmul(x, m.w13, m.w13_packed, o, y);
  };
  auto gmm2 = [&](const Tensor& x, const GroupedMatmulOptions& o, const Tensor& y) {
    ops.grouped_matmul(x, m.w2, m.w2_packed, o, y);
  };

  if (!int8_activations(d)) {
    gmm13(m.x, g1, m.h);
    ops.swiglu(m.h, m.a);
    gmm2(m.a, g2, m.y);
    return;
  }
  const Tensor& w13_scale = m.w13_scale;
  g2.scale = m.w2_scale;
  g2.per_token_scale = m.a_scale;
  g2.output_dtype = d.model;
  if (d.quant == QuantMode::w4a8) {
    // The int4 x int8 GEMM applies the group scales and the row scale itself (gemm.h): h is fp32, dequantised;
    // dequant_swiglu_quant then has nothing to dequantise (no weight or activation scale).
    g1.per_token_scale = m.x_scale;
    g1.output_dtype = DType::f32;
    gmm13(m.x, g1, m.h);
    DequantSwigluQuantOptions q;
    q.quant_scale = grouped ? m.smooth2 : Tensor{};
    q.group_index = grouped ? m.group_list : Tensor{};
    q.activate_left = true;
    q.quant_mode = 1;
    ops.dequant_swiglu_quant(m.h, q, DequantSwigluQuantResult{m.a, m.a_scale});
    g2.scale = Tensor{};
  } else if (d.quant == QuantMode::w8a8) {
    g1.output_dtype = DType::i32;
    gmm13(m.x, g1, m.h);
    DequantSwigluQuantOptions q;
    q.weight_scale = w13_scale;
    q.activation_scale = m.x_scale;
    q.quant_scale = grouped ? m.smooth2 : Tensor{};
    q.group_index = grouped ? m.group_list : Tensor{};
    q.activate_left = true;
    q.quant_mode = 1;
    ops.dequant_swiglu_quant(m.h, q, DequantSwigluQuantResult{m.a, m.a_scale});
  } else {  // w8a8c8
    g1.scale = w13_scale;
    g1.per_token_scale = m.x_scale;
    g1.output_dtype = DType::bf16;
    gmm13(m.x, g1, m.h);
    SwigluClipQuantOptions q;
    q.activate_left = true;
    ops.swiglu_clip_quant(m.h, m.group_list, m.alpha, q, SwigluClipQuantResult{m.a, m.a_scale});
  }
  gmm2(m.a, g2, m.y);
}

void routing_buffer_specs(const MoeConfig& config, int64_t capacity, RoutingBuffers& b, const BufferSpecFn& each) {
  const Dims d = dims_of(config);
  const int64_t T = capacity;
  each(b.logits, DType::f32, {T, d.E});
  const bool model_logits = config.router_logits_dtype == RouterLogitsDtype::model;
  if (model_logits) each(b.logits_model, d.model, {T, d.E});
  const DType logits_dtype = model_logits ? d.model : DType::f32;
  each(b.topk_weight, logits_dtype, {T, d.K});
  if (logits_dtype != d.model) each(b.topk_weight_model, d.model, {T, d.K});
  each(b.topk_idx, DType::i32, {T, d.K});
  each(b.scores, DType::f32, {T, d.E});
}

void chain_buffer_specs(const MoeConfig& config, int64_t capacity, ChainBuffers& b, const BufferSpecFn& each) {
  const Dims d = dims_of(config);
  const int64_t T = capacity, R = T * d.K;
  const bool quant = int8_activations(d);  // w4a16 runs the float chain
  routing_buffer_specs(config, capacity, b.routing, each);
  each(b.expanded_x, quant ? DType::i8 : d.model, {R, d.H});
  each(b.expanded_row_idx, DType::i32, {R});
  each(b.counts, DType::i64, counts_shape(d, d.E));
  each(b.expanded_scale, DType::f32, {R});
  each(b.h, h_dtype(d), {R, 2 * d.I});
  each(b.a, quant ? DType::i8 : d.model, {R, d.I});
  each(b.a_scale, DType::f32, {R});
  each(b.y, d.model, {R, d.H});
  if (d.Is > 0) {
    if (quant) {
      each(b.shared_idx, DType::i32, {T, 1});
      each(b.shared_x, DType::i8, {T, d.H});
      each(b.shared_row_idx, DType::i32, {T});
      each(b.shared_counts, DType::i64, counts_shape(d, 1));
      each(b.shared_x_scale, DType::f32, {T});
      each(b.unit_alpha, DType::f32, {1});
    }
    each(b.shared_h, h_dtype(d), {T, 2 * d.Is});
    each(b.shared_a, quant ? DType::i8 : d.model, {T, d.Is});
    each(b.shared_a_scale, DType::f32, {T});
    each(b.shared_y, d.model, {T, d.H});
    if (config.shared_expert_gated()) {
      each(b.shared_gate_logit, DType::f32, {T, 1});
      each(b.shared_out, d.model, {T, d.H});
    }
  }
}

int64_t chain_buffer_bytes(const MoeConfig& config, int64_t capacity) {
  return planned_bytes<ChainBuffers>(config, capacity, chain_buffer_specs);
}

ChainBuffers plan_chain_buffers(const MoeConfig& config, int64_t capacity) {
  ChainBuffers b;
  b.capacity = capacity;
  chain_buffer_specs(config, capacity, b, [&](Tensor& t, DType dt, const Shape& shape) {
    // shared_idx routes every token to the one shared expert (zeros); unit_alpha is a clip factor of 1.
    if (&t == &b.shared_idx) t = Tensor::zeros(dt, shape);
    else if (&t == &b.unit_alpha) t = Tensor::full(dt, shape, 1.0);
    else t = Tensor::empty(dt, shape);
  });
  return b;
}

Routed route_tokens(const ChainOps& ops, const MoeConfig& config, const LayerWeights& w,
                    const PackedLayerWeights* packed, const Tensor& x, RoutingBuffers& b, LayerTimings& t) {
  const int64_t T = x.size(0), K = config.num_experts_per_tok;
  // 1. router: fp32 logits (rounded to the model dtype when configured).
  auto t0 = Clock::now();
  const Tensor logits = rows(b.logits, T);
  if (packed) router_logits(packed->kernels.router, x, packed->router, logits);
  else router_logits(x, w.router, logits);
  Tensor gate_in = logits;
  if (b.logits_model.defined()) {
    gate_in = rows(b.logits_model, T);
    round_to(logits, gate_in);
  }
  t.router += ms_since(t0);

  // 2. gating (docs/layer.md §1, gating).
  t0 = Clock::now();
  GatingTopKOptions go;
  go.bias = w.router_bias;
  go.k_group = config.topk_group;
  go.group_count = config.n_group;
  go.routed_scaling_factor = config.routed_scaling_factor;
  go.eps = 1e-20;
  if (config.scoring_func == ScoringFunc::sigmoid) {
    go.norm_type = 1;
    go.group_select_mode = 1;
    go.renorm = 0;
  } else {
    go.norm_type = 0;
    go.group_select_mode = 0;
    go.renorm = config.norm_topk_prob ? 1 : 0;
  }
  const Tensor topk_weight = rows(b.topk_weight, T), topk_idx = rows(b.topk_idx, T);
  ops.gating_top_k(gate_in, K, go, GatingTopKResult{topk_weight, topk_idx, rows(b.scores, T)});
  Tensor scales = topk_weight;
  if (b.topk_weight_model.defined()) {
    scales = rows(b.topk_weight_model, T);
    round_to(topk_weight, scales);
  }
  t.gating += ms_since(t0);
  return Routed{topk_idx, scales};
}

void expand_tokens(const ChainOps& ops, const MoeConfig& config, const LayerWeights& w, const Tensor& x,
                   const Tensor& topk_idx, int64_t counts_type, const InitRoutingV2Result& out) {
  const Dims d = dims_of(config);
  const bool quant = int8_activations(d);  // w4a16 runs the float chain
  InitRoutingV2Options ro;
  ro.active_num = topk_idx.numel();
  ro.expert_num = d.E;
  ro.expert_tokens_num_type = counts_type;
  ro.expert_tokens_num_flag = true;
  ro.row_idx_type = 0;
  ro.quant_mode = quant ? 1 : -1;
  if (quant) ro.scale = w.smooth_scale1;
  ops.init_routing_v2(x, topk_idx, ro, out);
}

namespace {

// The projections of an MLP: packed when the caller has them, else the storage's transposed views.
void set_projections(MlpArgs& m, const PackedProjection* w13_packed, const PackedProjection* w2_packed,
                     const Tensor& w13, const Tensor& w2) {
  if (w13_packed) {
    m.w13_packed = &w13_packed->op;
    m.w2_packed = &w2_packed->op;
  } else {
    m.w13 = w13.transpose(1, 2);
    m.w2 = w2.transpose(1, 2);
  }
}

}  // namespace

MlpArgs routed_expert_weights(const LayerWeights& w, const PackedLayerWeights* packed) {
  MlpArgs m;
  set_projections(m, packed ? &packed->w13 : nullptr, packed ? &packed->w2 : nullptr, w.w13, w.w2);
  m.w13_scale = w.w13_scale;
  m.w2_scale = w.w2_scale;
  m.smooth2 = w.smooth_scale2;
  m.alpha = w.clip_alpha;
  return m;
}

Tensor run_shared_expert(const ChainOps& ops, const MoeConfig& config, const LayerWeights& w,
                         const PackedLayerWeights* packed, const Tensor& x, ChainBuffers& b) {
  const Dims d = dims_of(config);
  const int64_t T = x.size(0);
  const bool quant = int8_activations(d);  // w4a16 runs the float chain
  if (d.Is == 0 || T == 0) return Tensor{};
  // The same MLP over every token, as one group; qwen2_moe gates it with sigmoid(x . Wsg^T).
  MlpArgs s;
  s.x = x;
  if (quant) {
    InitRoutingV2Options so;
    so.active_num = T;
    so.expert_num = 1;
    so.expert_tokens_num_type = count_type(d);
    so.expert_tokens_num_flag = true;
    so.quant_mode = 1;
    s.x = rows(b.shared_x, T);
    s.x_scale = rows(b.shared_x_scale, T);
    ops.init_routing_v2(x, rows(b.shared_idx, T), so,
                        InitRoutingV2Result{s.x, rows(b.shared_row_idx, T), b.shared_counts, s.x_scale});
    // w8a8c8's swiglu_clip_quant needs its group counts and a clip factor (1: no clipping).
    if (d.quant == QuantMode::w8a8c8) s.group_list = b.shared_counts;
    s.alpha = b.unit_alpha;
    if (w.shared_w13_perm.defined())  // act order, after the quantisation as for the routed rows
      gather_rows_in_place(static_cast<std::byte*>(s.x.data()), T, d.H, d.H, 1,
                           w.shared_w13_perm.data_as<const int32_t>());
  } else if (w.shared_w13_perm.defined()) {
    // Act order: x gathered into shared_y, free until the down projection writes it (x is read by w13 only).
    s.x = rows(b.shared_y, T);
    gather_tokens(x, w.shared_w13_perm.data_as<const int32_t>(), s.x);
  }
  set_projections(s, packed ? &packed->shared_w13 : nullptr, packed ? &packed->shared_w2 : nullptr, w.shared_w13,
                  w.shared_w2);
  s.w13_scale = w.shared_w13_scale;
  s.w2_scale = w.shared_w2_scale;
  set_work_rows(s, b.shared_h, b.shared_a, b.shared_a_scale, b.shared_y, T);
  run_mlp(ops, config, s);
  if (!config.shared_expert_gated()) return s.y;
  const Tensor gate_logit = rows(b.shared_gate_logit, T);
  if (packed) router_logits(packed->kernels.gemm, x, packed->shared_gate, gate_logit);
  else router_logits(x, w.shared_gate, gate_logit);
  const Tensor out = rows(b.shared_out, T);
  apply_sigmoid_gate(gate_logit, s.y, out);
  return out;
}

void run_chain(const ChainOps& ops, const MoeConfig& config, const LayerWeights& w, const PackedLayerWeights* packed,
               const Tensor& x, const Tensor& out, ChainBuffers& b, LayerTimings* timings, LayerRouting* routing) {
  const Dims d = dims_of(config);
  const int64_t T = x.size(0), R = T * d.K;
  LayerTimings local;
  LayerTimings& t = timings ? *timings : local;
  if (T == 0) return;

  const Routed routed = route_tokens(ops, config, w, packed, x, b.routing, t);
  const Tensor& topk_idx = routed.topk_idx;
  const Tensor& scales = routed.scales;
  if (routing) *routing = LayerRouting{topk_idx, scales};

  // 3. routing (init_routing_v2, dropless, token-major, dynamic int8 for the quantised chains).
  auto t0 = Clock::now();
  const Tensor expanded_x = rows(b.expanded_x, R), expanded_row_idx = rows(b.expanded_row_idx, R);
  const Tensor expanded_scale = rows(b.expanded_scale, R);
  expand_tokens(ops, config, w, x, topk_idx, count_type(d),
                InitRoutingV2Result{expanded_x, expanded_row_idx, b.counts, expanded_scale});
  // Act order: each expert's rows in its input order (w4a8: after the per-token quantisation, whose scale, a max
  // over the row, and whose elementwise rounding do not depend on the order).
  if (w.w13_perm.defined()) gather_routed_rows(w.w13_perm, b.counts, expanded_x);
  t.routing += ms_since(t0);

  // 4. routed experts.
  t0 = Clock::now();
  MlpArgs m = routed_expert_weights(w, packed);
  m.x = expanded_x;
  m.x_scale = expanded_scale;
  m.group_list = b.counts;
  set_work_rows(m, b.h, b.a, b.a_scale, b.y, R);
  run_mlp(ops, config, m);
  t.experts += ms_since(t0);

  // 5. shared expert.
  t0 = Clock::now();
  const Tensor skip1 = run_shared_expert(ops, config, w, packed, x, b);
  if (d.Is > 0) t.shared += ms_since(t0);

  // 6. combine: out = skip1 + sum_k topk_weight[t, k] * y[row of (t, k)], in slot order.
  t0 = Clock::now();
  ops.finalize_routing(m.y, skip1, scales, expanded_row_idx, out);
  t.combine += ms_since(t0);
}

}  // namespace moefuse::layer
