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

// w4a16: packs int4 storage [E, out, in] with its scales and zero points [E, out, in / G], then drops all three.
PackedProjection pack_int4_projection(Tensor& storage, Tensor& scale, Tensor& zero) {
  PackedProjection p;
  const Tensor q = storage.contiguous(), s = scale.contiguous(), z = zero.contiguous();
  p.op = pack_grouped_int4(q, s, z, q.size(2) / s.size(2));
  p.experts = packed_experts(p.op);
  storage = scale = zero = Tensor{};
  return p;
}

void unpack_int4_projection(const PackedProjection& packed, Tensor& storage, Tensor& scale, Tensor& zero) {
  const int64_t E = packed.op.num_experts(), K = packed.op.k(), N = packed.op.n();
  const int64_t G = (*packed.experts)[0].group_size();
  storage = Tensor::empty(DType::u8, {E, N, K});
  scale = Tensor::empty(DType::f32, {E, N, K / G});
  zero = Tensor::empty(DType::u8, {E, N, K / G});
  unpack_grouped_int4(packed.op, storage, scale, zero);
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
  const bool int4 = w.w13.dtype() == DType::u8;  // w4a16
  if (w.w13.size(0) > 0) {  // an expert-parallel rank may hold no routed experts: nothing to pack then
    p.w13 = int4 ? pack_int4_projection(w.w13, w.w13_scale, w.w13_zero) : pack_projection(w.w13);
    p.w2 = int4 ? pack_int4_projection(w.w2, w.w2_scale, w.w2_zero) : pack_projection(w.w2);
  } else {
    w.w13 = w.w2 = Tensor{};
  }
  if (w.shared_w13.defined()) {
    p.shared_w13 = int4 ? pack_int4_projection(w.shared_w13, w.shared_w13_scale, w.shared_w13_zero)
                        : pack_projection(w.shared_w13);
    p.shared_w2 = int4 ? pack_int4_projection(w.shared_w2, w.shared_w2_scale, w.shared_w2_zero)
                       : pack_projection(w.shared_w2);
  }
  p.router = pack_rows(w.router);
  if (w.shared_gate.defined()) p.shared_gate = pack_rows(w.shared_gate);
  return p;
}

LayerWeights unpack_layer_weights(const MoeConfig& config, const LayerWeights& w, const PackedLayerWeights& packed) {
  LayerWeights out = w;
  if (int4_weights(config.quant_mode)) {
    unpack_int4_projection(packed.w13, out.w13, out.w13_scale, out.w13_zero);
    unpack_int4_projection(packed.w2, out.w2, out.w2_scale, out.w2_zero);
    if (config.shared_expert_width() > 0) {
      unpack_int4_projection(packed.shared_w13, out.shared_w13, out.shared_w13_scale, out.shared_w13_zero);
      unpack_int4_projection(packed.shared_w2, out.shared_w2, out.shared_w2_scale, out.shared_w2_zero);
    }
    return out;
  }
  out.w13 = unpack_projection(packed.w13);
  out.w2 = unpack_projection(packed.w2);
  if (config.shared_expert_width() > 0) {
    out.shared_w13 = unpack_projection(packed.shared_w13);
    out.shared_w2 = unpack_projection(packed.shared_w2);
  }
  return out;
}

}  // namespace moefuse::layer
