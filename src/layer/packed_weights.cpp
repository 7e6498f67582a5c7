#include "layer/packed_weights.h"

#include "ops/packed_grouped_weights.h"

namespace moefuse::layer {
namespace {

// Packs a projection stored [E, out, in] (Hugging Face) through its [E, in, out] view, then drops the storage.
PackedProjection pack_projection(Tensor& storage) {
  PackedProjection p;
  p.op = pack_grouped_weights(storage.transpose(1, 2));
  p.experts = packed_experts(p.op);
  storage = Tensor{};
  return p;
}

// A [out, in] matrix (router, shared gate) as the logical [in, out] the kernels read.
gemm::PackedWeights pack_rows(const Tensor& w) {
  return gemm::pack_weights_f(w.data(), w.dtype(), w.size(1), w.size(0), w.stride(1), w.stride(0));
}

// Storage [E, out, in] rebuilt from a projection packed from its [E, in, out] view.
Tensor unpack_projection(const PackedProjection& packed) {
  const int64_t E = packed.op.num_experts(), K = packed.op.k(), N = packed.op.n();
  Tensor storage = Tensor::empty(packed.op.dtype(), {E, N, K});
  const int64_t es = int64_t(dtype_size(packed.op.dtype()));
  for (int64_t e = 0; e < E; ++e)
    gemm::unpack_weights((*packed.experts)[e], static_cast<std::byte*>(storage.data()) + e * N * K * es, 1, K);
  return storage;
}

}  // namespace

PackedLayerWeights pack_layer_weights(LayerWeights& w) {
  PackedLayerWeights p;
  p.kernels.gemm = gemm::select_gemm_kernels();
  p.kernels.rows = rows::select_rows_kernels();
  if (w.w13.size(0) > 0) {  // an expert-parallel rank may hold no routed experts: nothing to pack then
    p.w13 = pack_projection(w.w13);
    p.w2 = pack_projection(w.w2);
  } else {
    w.w13 = w.w2 = Tensor{};
  }
  if (w.shared_w13.defined()) {
    p.shared_w13 = pack_projection(w.shared_w13);
    p.shared_w2 = pack_projection(w.shared_w2);
  }
  p.router = pack_rows(w.router);
  if (w.shared_gate.defined()) p.shared_gate = pack_rows(w.shared_gate);
  return p;
}

LayerWeights unpack_layer_weights(const MoeConfig& config, const LayerWeights& w, const PackedLayerWeights& packed) {
  LayerWeights out = w;
  out.w13 = unpack_projection(packed.w13);
  out.w2 = unpack_projection(packed.w2);
  if (config.shared_expert_width() > 0) {
    out.shared_w13 = unpack_projection(packed.shared_w13);
    out.shared_w2 = unpack_projection(packed.shared_w2);
  }
  return out;
}

}  // namespace moefuse::layer
