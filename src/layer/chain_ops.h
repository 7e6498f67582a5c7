// The operators the layer's chain calls, behind one interface with two implementations:
//   * operator_chain_ops(numerics): the public operators' _out forms (argument checks, then the library's best
//     code), the grouped matmuls in the layer's numerics tier — what MoeLayer runs;
//   * reference_chain_ops(): the scalar references of src/reference, called directly — the oracle of
//     `moefuse verify` and of reference_layer_forward().
// One chain (chain.cpp) over both, so the layer and its oracle cannot drift apart in how they chain operators.
#pragma once

#include "moefuse/numerics.h"
#include "moefuse/ops.h"

namespace moefuse::layer {

class ChainOps {
 public:
  virtual ~ChainOps() = default;
  virtual void gating_top_k(const Tensor& x, int64_t k, const GatingTopKOptions& o, const GatingTopKResult& out) const = 0;
  virtual void init_routing_v2(const Tensor& x, const Tensor& expert_idx, const InitRoutingV2Options& o,
                               const InitRoutingV2Result& out) const = 0;
  /// `packed`, when given, is `weight` packed (the layer's only copy: `weight` is then undefined); implementations
  /// that cannot use it (the references) need `weight`.
  virtual void grouped_matmul(const Tensor& x, const Tensor& weight, const PackedGroupedWeights* packed,
                              const GroupedMatmulOptions& o, const Tensor& y) const = 0;
  virtual void swiglu(const Tensor& x, const Tensor& out) const = 0;
  virtual void dequant_swiglu_quant(const Tensor& x, const DequantSwigluQuantOptions& o,
                                    const DequantSwigluQuantResult& out) const = 0;
  virtual void swiglu_clip_quant(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha,
                                 const SwigluClipQuantOptions& o, const SwigluClipQuantResult& out) const = 0;
  /// finalize_routing with drop_pad_mode 2 and no skip2 / bias (the layer's combine).
  virtual void finalize_routing(const Tensor& rows, const Tensor& skip1, const Tensor& scales,
                                const Tensor& expanded_src_to_dst_row, const Tensor& out) const = 0;
};

const ChainOps& operator_chain_ops(Numerics numerics);
const ChainOps& reference_chain_ops();

}  // namespace moefuse::layer
