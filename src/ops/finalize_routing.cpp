#include "moefuse/ops/finalize_routing.h"

#include <limits>
#include <string>

#include "base/check.h"
#include "base/default_pool.h"
#include "base/elements.h"
#include "base/scratch.h"
#include "kernels/rows/rows.h"
#include "ops/fast_path_declines.h"
#include "reference/finalize_routing.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "finalize_routing";

struct Dims {
  int64_t N = 0, K = 0, H = 0;
};

std::string str(int64_t v) { return std::to_string(v); }

// `t` (optional) has the rows' dtype.
void same_dtype_as_rows(const char* arg, const Tensor& t, const Tensor& rows) {
  if (t.dtype() != rows.dtype())
    check::fail_type(kOp, arg, "dtype " + std::string(dtype_name(rows.dtype())) + " (as expanded_permuted_rows)",
                     std::string(dtype_name(t.dtype())));
}

void shape_n_h(const char* arg, const Tensor& t, const Dims& dims) {
  if (t.dim() != 2 || t.size(0) != dims.N || t.size(1) != dims.H)
    check::fail_value(kOp, arg, "shape [N, H] = " + Shape{dims.N, dims.H}.str(), t.describe());
}

void shape_n_k(const char* arg, const Tensor& t, const Dims& dims) {
  if (t.dim() != 2 || t.size(0) != dims.N || t.size(1) != dims.K)
    check::fail_value(kOp, arg, "shape [N, K] = " + Shape{dims.N, dims.K}.str(), t.describe());
}

// Every check of finalize_routing.h, in argument order, values last. Returns N, K, H.
Dims validate(const Tensor& rows, const Tensor& skip1, const Tensor& skip2, const Tensor& bias, const Tensor& scales,
              const Tensor& src_to_dst, const Tensor& expert_ids, int64_t drop_pad_mode, int64_t k) {
  check::dtype_in(kOp, "expanded_permuted_rows", rows, {DType::f32, DType::bf16, DType::f16});
  check::in_range(kOp, "drop_pad_mode", drop_pad_mode, 0, 3, "0 <= drop_pad_mode <= 3");
  check::in_range(kOp, "k", k, 1, std::numeric_limits<int64_t>::max(), "k >= 1");
  const bool drop_pad = drop_pad_mode == 1 || drop_pad_mode == 3;
  if (drop_pad && rows.dim() != 3)
    check::fail_value(kOp, "expanded_permuted_rows",
                      "a 3-D tensor [E, C, H] for drop_pad_mode " + str(drop_pad_mode), rows.describe());
  if (!drop_pad && rows.dim() != 2)
    check::fail_value(kOp, "expanded_permuted_rows",
                      "a 2-D tensor [N*K, H] for drop_pad_mode " + str(drop_pad_mode), rows.describe());

  check::dtype_in(kOp, "expanded_src_to_dst_row", src_to_dst, {DType::i32, DType::i64});
  check::rank(kOp, "expanded_src_to_dst_row", src_to_dst, 1);
  const int64_t len = src_to_dst.size(0);

  Dims dims;
  dims.H = rows.size(-1);
  if (scales.defined()) {
    if (scales.dtype() != rows.dtype() && scales.dtype() != DType::f32)
      check::fail_type(kOp, "scales",
                       rows.dtype() == DType::f32
                           ? std::string("dtype f32")
                           : "dtype " + std::string(dtype_name(rows.dtype())) + " (as expanded_permuted_rows) or f32",
                       std::string(dtype_name(scales.dtype())));
    if (scales.dim() != 2 || scales.size(1) < 1)
      check::fail_value(kOp, "scales", "a 2-D tensor [N, K] with K >= 1", scales.describe());
    dims.N = scales.size(0);
    dims.K = scales.size(1);
    if (k != 1 && k != dims.K)
      check::fail_value(kOp, "k", "1 or K = scales.size(1) = " + str(dims.K), str(k));
    if (len % dims.K != 0 || len / dims.K != dims.N)
      check::fail_value(kOp, "expanded_src_to_dst_row",
                        "shape [N*K] with N = " + str(dims.N) + ", K = " + str(dims.K) + " (from scales)",
                        src_to_dst.describe());
  } else {
    if (len % k != 0)
      check::fail_value(kOp, "expanded_src_to_dst_row", "a length divisible by k = " + str(k),
                        src_to_dst.describe());
    dims.K = k;
    dims.N = len / k;
  }
  if (!drop_pad && rows.size(0) != len)
    check::fail_value(kOp, "expanded_permuted_rows", "size(0) = N*K = " + str(len), rows.describe());

  if (skip1.defined()) {
    same_dtype_as_rows("skip1", skip1, rows);
    shape_n_h("skip1", skip1, dims);
  }
  if (skip2.defined()) {
    if (!skip1.defined()) check::fail_value(kOp, "skip2", "skip2 only together with skip1", "skip2 without skip1");
    same_dtype_as_rows("skip2", skip2, rows);
    shape_n_h("skip2", skip2, dims);
  }
  if (bias.defined()) {
    same_dtype_as_rows("bias", bias, rows);
    if (bias.dim() != 2 || bias.size(1) != dims.H)
      check::fail_value(kOp, "bias", "a 2-D tensor [E, H] with H = " + str(dims.H), bias.describe());
    if (!expert_ids.defined())
      check::fail_value(kOp, "expert_for_source_row", "a tensor when bias is given", "none");
  }
  if (expert_ids.defined()) {
    check::dtype_in(kOp, "expert_for_source_row", expert_ids, {DType::i32, DType::i64});
    shape_n_k("expert_for_source_row", expert_ids, dims);
  }

  // Values: destination rows, then (only when they are used, i.e. with bias) expert ids.
  const int64_t num_rows = drop_pad ? rows.size(0) * rows.size(1) : len;
  for (int64_t j = 0; j < len; ++j) {
    int64_t d = load_element_int(src_to_dst.data(), src_to_dst.dtype(), j * src_to_dst.stride(0));
    if (d < -1 || d >= num_rows)
      check::fail_value(kOp, "expanded_src_to_dst_row",
                        "values in [-1, " + str(num_rows) + ") (" + (drop_pad ? "E*C" : "N*K") + ")",
                        str(d) + " at index " + str(j));
  }
  if (bias.defined()) {
    const int64_t E = bias.size(0);
    for (int64_t n = 0; n < dims.N; ++n)
      for (int64_t kk = 0; kk < dims.K; ++kk) {
        int64_t e = load_element_int(expert_ids.data(), expert_ids.dtype(),
                                     n * expert_ids.stride(0) + kk * expert_ids.stride(1));
        if (e < 0 || e >= E)
          check::fail_value(kOp, "expert_for_source_row", "values in [0, " + str(E) + ") (E = bias.size(0))",
                            str(e) + " at " + Shape{n, kk}.str());
      }
  }
  return dims;
}

// ─── Fast path ──────────────────────────────────────────────────────────────────────────────────────────────────
// reference::finalize_routing's arithmetic, in its order, on typed pointers: per output row an fp32 accumulator,
// acc = skip1 (+ skip2), then acc = acc + s * v for k = 0 .. K-1 (the first term starts acc when there is no skip),
// one rounding at the end. Taken when every float tensor's rows are contiguous (stride 1 along H); the output rows
// are independent, so they are spread over the operators' pool.

bool h_contiguous(const Tensor& t) { return !t.defined() || t.size(-1) <= 1 || t.stride(-1) == 1; }

struct FinalizeArgs {
  const Tensor &rows, &skip1, &skip2, &bias, &scales, &src_to_dst, &expert_ids;
  bool k_major;
  int64_t K;
  const Tensor& out;
  rows::CombineFn combine;  // for the rows' dtype, chosen once per call
};

// acc = (started ? acc + term : term), term = scaled ? s * v : v, v = (row ? row[h] : 0) (+ bias[h]). The layer's
// case (a row, a scale, no bias) is the rows family's combine kernel; the rest is this operator's own.
template <class T>
void add_term(rows::CombineFn combine, float* acc, const T* row, const T* bias, bool scaled, float s, bool started,
              int64_t H) {
  if (row && !bias && scaled) return combine(H, row, s, started, acc);
  if (row && !bias && started) {
    for (int64_t h = 0; h < H; ++h) acc[h] = acc[h] + widen_f32(row[h]);
    return;
  }
  for (int64_t h = 0; h < H; ++h) {
    float v = row ? widen_f32(row[h]) : 0.0f;
    if (bias) v = v + widen_f32(bias[h]);
    const float term = scaled ? s * v : v;
    acc[h] = started ? acc[h] + term : term;
  }
}

template <class T>
void finalize_rows(const FinalizeArgs& a, int64_t n0, int64_t n1) {
  const int64_t N = a.out.size(0), H = a.out.size(1);
  const bool three_d = a.rows.dim() == 3;
  const int64_t C = three_d ? a.rows.size(1) : 1;
  auto ptr = [](const Tensor& t, int64_t offset) { return static_cast<const T*>(t.data()) + offset; };
  Scratch<float> acc(H);
  for (int64_t n = n0; n < n1; ++n) {
    const bool has_skip = a.skip1.defined();
    if (has_skip) {
      const T* s1 = ptr(a.skip1, n * a.skip1.stride(0));
      for (int64_t h = 0; h < H; ++h) acc[h] = widen_f32(s1[h]);
      if (a.skip2.defined()) {
        const T* s2 = ptr(a.skip2, n * a.skip2.stride(0));
        for (int64_t h = 0; h < H; ++h) acc[h] = acc[h] + widen_f32(s2[h]);
      }
    }
    for (int64_t k = 0; k < a.K; ++k) {
      const int64_t j = a.k_major ? k * N + n : n * a.K + k;
      const int64_t d = load_element_int(a.src_to_dst.data(), a.src_to_dst.dtype(), j * a.src_to_dst.stride(0));
      const T* row = nullptr;
      if (d != -1)
        row = ptr(a.rows, three_d ? (d / C) * a.rows.stride(0) + (d % C) * a.rows.stride(1) : d * a.rows.stride(0));
      const T* bias = nullptr;
      if (a.bias.defined()) {
        const int64_t e = load_element_int(a.expert_ids.data(), a.expert_ids.dtype(),
                                           n * a.expert_ids.stride(0) + k * a.expert_ids.stride(1));
        bias = ptr(a.bias, e * a.bias.stride(0));
      }
      const float s = a.scales.defined() ? load_element_f32(a.scales.data(), a.scales.dtype(),
                                                            n * a.scales.stride(0) + k * a.scales.stride(1))
                                         : 1.0f;
      add_term(a.combine, acc.data(), row, bias, a.scales.defined(), s, has_skip || k > 0, H);
    }
    store_row(acc.data(), H, a.out.dtype(), static_cast<T*>(a.out.data()) + n * H);
  }
}

void run(const Tensor& rows, const Tensor& skip1, const Tensor& skip2, const Tensor& bias, const Tensor& scales,
         const Tensor& src_to_dst, const Tensor& expert_ids, int64_t drop_pad_mode, int64_t K, const Tensor& out) {
  if (finalize_routing_fast_path_declines(rows, skip1, skip2, bias))
    return reference::finalize_routing(rows, skip1, skip2, bias, scales, src_to_dst, expert_ids, drop_pad_mode, K,
                                       out);
  const FinalizeArgs a{rows, skip1, skip2, bias, scales, src_to_dst, expert_ids, drop_pad_mode <= 1, K, out,
                         rows::select_rows_kernels().combine[rows::slot(rows.dtype())]};
  parallel_rows(out.size(0), K * out.size(1), [&](int64_t n0, int64_t n1) {
    switch (rows.dtype()) {
      case DType::f32: return finalize_rows<float>(a, n0, n1);
      case DType::bf16: return finalize_rows<bfloat16>(a, n0, n1);
      case DType::f16: return finalize_rows<float16>(a, n0, n1);
      default: return;  // not reached: the op takes float rows only
    }
  });
}

}  // namespace

const char* finalize_routing_fast_path_declines(const Tensor& rows, const Tensor& skip1, const Tensor& skip2,
                                                const Tensor& bias) {
  if (!h_contiguous(rows)) return "expanded_permuted_rows' last dim is not contiguous";
  if (!h_contiguous(skip1)) return "skip1's last dim is not contiguous";
  if (!h_contiguous(skip2)) return "skip2's last dim is not contiguous";
  if (!h_contiguous(bias)) return "bias's last dim is not contiguous";
  return nullptr;
}

Tensor finalize_routing(const Tensor& expanded_permuted_rows, const Tensor& skip1, const Tensor& skip2,
                        const Tensor& bias, const Tensor& scales, const Tensor& expanded_src_to_dst_row,
                        const Tensor& expert_for_source_row, int64_t drop_pad_mode, int64_t k) {
  Dims dims = validate(expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row,
                       expert_for_source_row, drop_pad_mode, k);
  Tensor out = Tensor::empty(expanded_permuted_rows.dtype(), {dims.N, dims.H});
  run(expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row, expert_for_source_row,
      drop_pad_mode, dims.K, out);
  return out;
}

void finalize_routing_out(const Tensor& expanded_permuted_rows, const Tensor& skip1, const Tensor& skip2,
                          const Tensor& bias, const Tensor& scales, const Tensor& expanded_src_to_dst_row,
                          const Tensor& expert_for_source_row, int64_t drop_pad_mode, int64_t k, const Tensor& out) {
  Dims dims = validate(expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row,
                       expert_for_source_row, drop_pad_mode, k);
  check::output(kOp, "out", out, expanded_permuted_rows.dtype(), {dims.N, dims.H});
  run(expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row, expert_for_source_row,
      drop_pad_mode, dims.K, out);
}

}  // namespace moefuse
