#include "layer/chain_ops.h"

#include "base/groups.h"
#include "ops/packed_grouped_weights.h"
#include "reference/dequant_swiglu_quant.h"
#include "reference/finalize_routing.h"
#include "reference/gating.h"
#include "reference/grouped_matmul.h"
#include "reference/init_routing.h"
#include "reference/swiglu.h"
#include "reference/swiglu_clip_quant.h"

namespace moefuse::layer {
namespace {

class OperatorOps final : public ChainOps {
 public:
  explicit OperatorOps(Numerics numerics) : numerics_(numerics) {}
  void gating_top_k(const Tensor& x, int64_t k, const GatingTopKOptions& o, const GatingTopKResult& out) const override {
    moefuse::gating_top_k_out(x, k, o, out);
  }
  void init_routing_v2(const Tensor& x, const Tensor& idx, const InitRoutingV2Options& o,
                       const InitRoutingV2Result& out) const override {
    moefuse::init_routing_v2_out(x, idx, o, out);
  }
  void grouped_matmul(const Tensor& x, const Tensor& w, const PackedGroupedWeights* packed,
                      const GroupedMatmulOptions& o, const Tensor& y) const override {
    if (packed) moefuse::grouped_matmul_out(x, *packed, o, y, numerics_);
    else moefuse::grouped_matmul_out(x, w, o, y, numerics_);
  }
  void swiglu(const Tensor& x, const Tensor& out) const override { moefuse::swiglu_out(x, -1, out); }
  void dequant_swiglu_quant(const Tensor& x, const DequantSwigluQuantOptions& o,
                            const DequantSwigluQuantResult& out) const override {
    moefuse::dequant_swiglu_quant_out(x, o, out);
  }
  void swiglu_clip_quant(const Tensor& x, const Tensor& gi, const Tensor& alpha, const SwigluClipQuantOptions& o,
                         const SwigluClipQuantResult& out) const override {
    moefuse::swiglu_clip_quant_out(x, gi, alpha, o, out);
  }
  void finalize_routing(const Tensor& rows, const Tensor& skip1, const Tensor& scales, const Tensor& idx,
                        const Tensor& out) const override {
    moefuse::finalize_routing_out(rows, skip1, Tensor{}, Tensor{}, scales, idx, Tensor{}, 2, 1, out);
  }

 private:
  Numerics numerics_;  // the tier of the grouped matmuls (the only operators that have tiers)
};

// The references take resolved arguments; the chain only uses the modes mapped here (dropless init_routing_v2
// with an expert count, group_list types 1/2, dynamic dequant_swiglu_quant with activate_left), so the mapping
// stays this small. The layer's own forward goes through OperatorOps, whose checks cover the same calls.
class ReferenceOps final : public ChainOps {
 public:
  void gating_top_k(const Tensor& x, int64_t k, const GatingTopKOptions& o, const GatingTopKResult& out) const override {
    reference::gating_top_k(x, k, o, out);
  }
  void init_routing_v2(const Tensor& x, const Tensor& idx, const InitRoutingV2Options& o,
                       const InitRoutingV2Result& out) const override {
    reference::InitRoutingV2Plan plan;
    plan.rows = out.expanded_x.size(0);
    plan.expert_start = 0;
    plan.expert_end = o.expert_num;
    plan.expert_num = o.expert_num;
    plan.count_type = int(o.expert_tokens_num_type);
    plan.quant_mode = int(o.quant_mode);
    plan.row_idx_type = int(o.row_idx_type);
    reference::init_routing_v2(x, idx, o.scale, o.offset, plan, out.expanded_x, out.expanded_row_idx,
                               out.expert_token_cumsum_or_count, out.expanded_scale);
  }
  void grouped_matmul(const Tensor& x, const Tensor& w, const PackedGroupedWeights*, const GroupedMatmulOptions& o,
                      const Tensor& y) const override {
    reference::GroupedMatmulArgs a;
    a.x = x;
    a.weight = w;
    a.bias = o.bias;
    a.scale = o.scale;
    a.per_token_scale = o.per_token_scale;
    a.group_list = o.group_list;
    a.group_list_type = o.group_list_type;
    a.act_type = o.act_type;
    reference::grouped_matmul(a, y);
  }
  void swiglu(const Tensor& x, const Tensor& out) const override { reference::swiglu(x, x.dim() - 1, out); }
  void dequant_swiglu_quant(const Tensor& x, const DequantSwigluQuantOptions& o,
                            const DequantSwigluQuantResult& out) const override {
    reference::DequantSwigluQuantArgs a;
    a.x = x;
    a.weight_scale = o.weight_scale;
    a.activation_scale = o.activation_scale;
    a.quant_scale = o.quant_scale;
    a.group_index = o.group_index;
    a.group_type = o.group_index.dim() == 2 ? GroupListType::key_value : GroupListType::count;
    a.activate_left = o.activate_left;
    a.dynamic = o.quant_mode == 1;
    reference::dequant_swiglu_quant(a, out.y, out.scale);
  }
  void swiglu_clip_quant(const Tensor& x, const Tensor& gi, const Tensor& alpha, const SwigluClipQuantOptions& o,
                         const SwigluClipQuantResult& out) const override {
    reference::swiglu_clip_quant(x, gi, alpha, o.activate_left, out.y, out.scale);
  }
  void finalize_routing(const Tensor& rows, const Tensor& skip1, const Tensor& scales, const Tensor& idx,
                        const Tensor& out) const override {
    reference::finalize_routing(rows, skip1, Tensor{}, Tensor{}, scales, idx, Tensor{}, 2, scales.size(1), out);
  }
};

}  // namespace

const ChainOps& operator_chain_ops(Numerics numerics) {
  static const OperatorOps native(Numerics::native), portable(Numerics::portable);
  return numerics == Numerics::native ? native : portable;
}

const ChainOps& reference_chain_ops() {
  static const ReferenceOps ops;
  return ops;
}

}  // namespace moefuse::layer
