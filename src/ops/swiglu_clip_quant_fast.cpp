// swiglu_clip_quant's vector path (swiglu_clip_quant_fast.h): the scalar variant of its steps, the choice of variant
// and the operator's row loop over the thread pool.
#include "ops/swiglu_clip_quant_fast.h"

#include <algorithm>
#include <cstring>

#include "base/default_pool.h"
#include "base/elements.h"
#include "base/groups.h"
#include "base/scratch.h"

#define MOEFUSE_SWIGLU_CLIP_NS swiglu_clip_scalar
#include "ops/swiglu_clip_quant_impl.h"

namespace moefuse {

// swiglu_clip_quant__avx2.cpp, swiglu_clip_quant__avx512.cpp.
void round_bf16_in_place__avx2(int64_t n, float* v);
void clip_row__avx2(int64_t n, float alpha, float* v);
void widen_bf16__avx2(int64_t n, const bfloat16* src, float* out);
void widen_f16__avx2(int64_t n, const float16* src, float* out);
void round_bf16_in_place__avx512(int64_t n, float* v);
void clip_row__avx512(int64_t n, float alpha, float* v);
void widen_bf16__avx512(int64_t n, const bfloat16* src, float* out);
void widen_f16__avx512(int64_t n, const float16* src, float* out);

namespace {

void round_bf16_in_place__scalar(int64_t n, float* v) { swiglu_clip_scalar::round_bf16_in_place(n, v); }
void clip_row__scalar(int64_t n, float alpha, float* v) { swiglu_clip_scalar::clip_row(n, alpha, v); }
void widen_bf16__scalar(int64_t n, const bfloat16* src, float* out) { swiglu_clip_scalar::widen_bf16(n, src, out); }
void widen_f16__scalar(int64_t n, const float16* src, float* out) { swiglu_clip_scalar::widen_f16(n, src, out); }

constexpr int64_t kRows = 16;  // rows per task

}  // namespace

SwigluClipKernels select_swiglu_clip(Isa isa) {
  SwigluClipKernels k;
  k.rows = rows::select_rows_kernels(isa);
  if (int(isa) >= int(Isa::avx512)) {
    k.round_bf16 = round_bf16_in_place__avx512, k.clip = clip_row__avx512, k.widen_bf16 = widen_bf16__avx512;
    k.widen_f16 = widen_f16__avx512;
    k.name = "swiglu_clip_quant__avx512";
  } else if (int(isa) >= int(Isa::avx2)) {
    k.round_bf16 = round_bf16_in_place__avx2, k.clip = clip_row__avx2, k.widen_bf16 = widen_bf16__avx2;
    k.widen_f16 = widen_f16__avx2;
    k.name = "swiglu_clip_quant__avx2";
  } else {
    k.round_bf16 = round_bf16_in_place__scalar, k.clip = clip_row__scalar, k.widen_bf16 = widen_bf16__scalar;
    k.widen_f16 = widen_f16__scalar;
    k.name = "swiglu_clip_quant__scalar";
  }
  return k;
}

float swiglu_clip_quant_row(const SwigluClipKernels& k, int64_t n, const float* act, const float* lin, float alpha,
                            float* tmp, int8_t* q) {
  k.rows.swiglu[0](n, act, lin, tmp);  // lin (*) silu(act): the reference's silu(a) * b up to a NaN's payload
  k.clip(n, alpha, tmp);
  return k.rows.quantize[0](n, tmp, nullptr, tmp, q);
}

const char* swiglu_clip_quant_fast_declines(const Tensor& x) {
  if (x.size(1) > 1 && x.stride(1) != 1) return "x's rows are not contiguous";
  return nullptr;
}

const char* swiglu_clip_quant_fast(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha,
                                   bool activate_left, const Tensor& y, const Tensor& scale, Isa isa) {
  if (const char* why = swiglu_clip_quant_fast_declines(x)) return why;
  const int64_t T = x.size(0), h = x.size(1) / 2;
  int8_t* yp = y.data_as<int8_t>();
  float* sp = scale.data_as<float>();
  // Rows no group covers stay zero, as in the reference.
  if (y.numel() > 0) std::memset(yp, 0, size_t(y.numel()));
  if (scale.numel() > 0) std::memset(sp, 0, size_t(scale.numel()) * sizeof(float));
  if (T == 0 || h == 0) return nullptr;

  // The groups as (begin, end, alpha) in row order.
  struct Span {
    int64_t begin, end;
    float alpha;
  };
  Scratch<Span> spans(group_index.size(0) + 1);
  int64_t groups = 0;
  for_each_group(group_index, GroupListType::count, [&](const GroupSpan& g) {
    spans[groups++] = Span{g.begin, g.end,
                           load_element_f32(group_alpha.data(), DType::f32, g.expert * group_alpha.stride(0))};
  });
  const int64_t covered = groups > 0 ? spans[groups - 1].end : 0;
  const int64_t blocks = (covered + kRows - 1) / kRows;
  const SwigluClipKernels k = select_swiglu_clip(isa);
  const DType dt = x.dtype();
  const int64_t es = int64_t(dtype_size(dt)), row_bytes = x.stride(0) * es;
  const int64_t act_off = (activate_left ? 0 : h) * es, lin_off = (activate_left ? h : 0) * es;
  const auto* base = static_cast<const std::byte*>(x.data());

  auto block = [&](int64_t b) {
    const int64_t r0 = b * kRows, r1 = std::min(covered, r0 + kRows);
    Scratch<float> act(dt == DType::f32 ? 0 : h), lin(dt == DType::f32 ? 0 : h), tmp(h);
    int64_t g = 0;
    for (int64_t r = r0; r < r1; ++r) {
      while (spans[g].end <= r) ++g;
      if (r < spans[g].begin) continue;  // not covered by a group (stays zero)
      const std::byte* row = base + r * row_bytes;
      const float *a, *l;
      if (dt == DType::f32) {
        a = reinterpret_cast<const float*>(row + act_off), l = reinterpret_cast<const float*>(row + lin_off);
      } else if (dt == DType::bf16) {
        k.widen_bf16(h, reinterpret_cast<const bfloat16*>(row + act_off), act.data());
        k.widen_bf16(h, reinterpret_cast<const bfloat16*>(row + lin_off), lin.data());
        a = act.data(), l = lin.data();
      } else {
        k.widen_f16(h, reinterpret_cast<const float16*>(row + act_off), act.data());
        k.widen_f16(h, reinterpret_cast<const float16*>(row + lin_off), lin.data());
        a = act.data(), l = lin.data();
      }
      sp[r] = swiglu_clip_quant_row(k, h, a, l, spans[g].alpha, tmp.data(), yp + r * h);
    }
  };
  parallel_items(blocks, block);
  return nullptr;
}

}  // namespace moefuse
