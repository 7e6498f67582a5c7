#include "layer/packed_weights.h"

#include "layer/weights.h"
#include "moefuse/error.h"
#include "ops/grouped_matmul_fp8a.h"
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

// FP8 form (weights.h): packs e4m3 storage [E, out, in] with its scales [E, out, fp8_blocks(in)], then drops both.
PackedProjection pack_fp8_projection(Tensor& storage, Tensor& scale, bool fp8_activations) {
  PackedProjection p;
  p.op = fp8_activations ? pack_grouped_fp8_act(storage.contiguous(), scale.contiguous())
                         : pack_grouped_fp8(storage.contiguous(), scale.contiguous());
  p.experts = packed_experts(p.op);
  storage = scale = Tensor{};
  return p;
}

// The bf16 storage [E, out, in] an FP8 projection stands for (what the kernels compute with).
Tensor dequantise_fp8_projection(const PackedProjection& packed) {
  Tensor storage = Tensor::empty(DType::bf16, {packed.op.num_experts(), packed.op.n(), packed.op.k()});
  dequantise_grouped_fp8(packed.op, storage);
  return storage;
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

Numerics resolve_numerics(const LayerOptions& options, const MoeConfig& config) {
  if (options.numerics) return *options.numerics;
  if (config.numerics) return *config.numerics;
  return default_numerics();
}

PackedLayerWeights pack_layer_weights(LayerWeights& w, Numerics numerics, Fp8Activations fp8_activations) {
  PackedLayerWeights p;
  p.fp8_activations = fp8_activations != Fp8Activations::none;
  if (p.fp8_activations && !fp8_form(w))
    throw ValueError(
        "MoeLayer: fp8_activations: expected none for expert weights that are not FP8 block-scaled held one byte per "
        "weight (dynamic_1x128 runs on an FP8 checkpoint's projections kept one byte, fp8_weights_kept_one_byte, or "
        "MoeLayer::with_random_fp8_weights), got " + std::string(fp8_activations_name(fp8_activations)) +
        " with w13 of dtype " + std::string(dtype_name(w.w13.dtype())));
  p.kernels.gemm = gemm::select_gemm_kernels(numerics);
  p.kernels.router = gemm::select_gemm_kernels(Numerics::portable);
  p.kernels.rows = rows::select_rows_kernels();
  p.fp8 = fp8_form(w);
  const bool int4 = !p.fp8 && w.w13.dtype() == DType::u8;  // w4a16
  auto pack = [&](Tensor& storage, Tensor& scale, Tensor& zero) {
    return p.fp8 ? pack_fp8_projection(storage, scale, p.fp8_activations) : int4 ? pack_int4_projection(storage, scale, zero)
                                                            : pack_projection(storage);
  };
  if (w.w13.size(0) > 0) {  // an expert-parallel rank may hold no routed experts: nothing to pack then
    p.w13 = pack(w.w13, w.w13_scale, w.w13_zero);
    p.w2 = pack(w.w2, w.w2_scale, w.w2_zero);
  } else {
    w.w13 = w.w2 = w.w13_scale = w.w2_scale = Tensor{};
  }
  if (w.shared_w13.defined()) {
    p.shared_w13 = pack(w.shared_w13, w.shared_w13_scale, w.shared_w13_zero);
    p.shared_w2 = pack(w.shared_w2, w.shared_w2_scale, w.shared_w2_zero);
  }
  // Act order's input orders stay in `w`, read by flat index (act_order.h).
  for (Tensor* perm : {&w.w13_perm, &w.shared_w13_perm})
    if (perm->defined()) *perm = perm->contiguous();
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
  // FP8: the bf16 weights the kernels compute with (the layer's float form; no scales).
  auto unpack = [&](const PackedProjection& p) { return packed.fp8 ? dequantise_fp8_projection(p) : unpack_projection(p); };
  out.w13 = unpack(packed.w13);
  out.w2 = unpack(packed.w2);
  if (config.shared_expert_width() > 0) {
    out.shared_w13 = unpack(packed.shared_w13);
    out.shared_w2 = unpack(packed.shared_w2);
  }
  return out;
}

}  // namespace moefuse::layer
