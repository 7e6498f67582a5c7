#include "reference/init_routing.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "base/elements.h"
#include "base/quantize.h"
#include "base/scratch.h"

namespace moefuse::reference {
namespace {

// Element (i, j) of a 2-D tensor as an offset in elements (strides respected).
int64_t offset2(const Tensor& t, int64_t i, int64_t j) { return i * t.strides()[0] + j * t.strides()[1]; }

// A [N, K] index tensor flattened token-major: ids[n*K + k] = t[n, k].
void flat_ids(const Tensor& t, int64_t* ids) {
  const int64_t n = t.size(0), k = t.size(1);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) ids[r * k + c] = load_element_int(t.data(), t.dtype(), offset2(t, r, c));
}

// perm[0..n) = the stable ascending argsort of key[0..n): positions by ascending key, equal keys by ascending
// position. That is the order of the pairs (key, position), which is strict and total, so std::sort (in place, no
// allocation, unlike std::stable_sort) gives exactly the permutation a stable sort gives.
void stable_argsort(const int64_t* key, int64_t n, int64_t* perm) {
  std::iota(perm, perm + n, int64_t{0});
  std::sort(perm, perm + n, [&](int64_t a, int64_t b) { return key[a] < key[b] || (key[a] == key[b] && a < b); });
}

// Copies row `src_row` of x into row `dst_row` of the contiguous [rows, H] buffer `dst`, bit for bit.
void copy_row(const Tensor& x, int64_t src_row, void* dst, int64_t dst_row) {
  const int64_t h = x.size(1);
  const size_t es = x.element_size();
  auto* out = static_cast<std::byte*>(dst) + size_t(dst_row * h) * es;
  const auto* in = static_cast<const std::byte*>(x.data());
  for (int64_t j = 0; j < h; ++j) std::memcpy(out + size_t(j) * es, in + size_t(offset2(x, src_row, j)) * es, es);
}

}  // namespace

void init_routing(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_rows,
                  const Tensor& expanded_x, const Tensor& expanded_row_idx, const Tensor& expanded_expert_idx) {
  const int64_t n = x.size(0), nk = expert_idx.numel();
  Scratch<int64_t> ids(nk), rows(nk), perm(nk);
  flat_ids(expert_idx, ids.data());
  flat_ids(row_idx, rows.data());  // same token-major flattening
  stable_argsort(ids.data(), nk, perm.data());

  auto* eri = expanded_row_idx.data_as<int32_t>();
  auto* eei = expanded_expert_idx.data_as<int32_t>();
  for (int64_t i = 0; i < nk; ++i) {
    const int64_t sorted_row = rows[perm[i]];
    eei[i] = int32_t(ids[perm[i]]);
    eri[sorted_row] = int32_t(i);
    if (i < active_rows) copy_row(x, sorted_row % n, expanded_x.data(), i);
  }
}

void init_routing_v2(const Tensor& x, const Tensor& expert_idx, const Tensor& scale, const Tensor& offset,
                     const InitRoutingV2Plan& plan, const Tensor& expanded_x, const Tensor& expanded_row_idx,
                     const Tensor& expert_token_cumsum_or_count, const Tensor& expanded_scale) {
  const int64_t h = x.size(1), k = expert_idx.size(1), nk = expert_idx.numel();
  Scratch<int64_t> ids(nk), key(nk), perm(nk);
  flat_ids(expert_idx, ids.data());
  const int64_t start = plan.expert_start, end = plan.expert_end;

  // Sort keys: ids below the range go behind everything; ids at or past `end` sort after the valid block.
  for (int64_t t = 0; t < nk; ++t) key[t] = ids[t] < start ? std::numeric_limits<int64_t>::max() : ids[t];
  stable_argsort(key.data(), nk, perm.data());
  int64_t active = 0;  // A
  for (int64_t v : ids) active += (v >= start && v < end) ? 1 : 0;

  // Every output starts as "no token": zero rows, zero scales, -1 indices (docs/operators.md, Numerics: no garbage).
  const int64_t out_rows = expanded_scale.numel();
  auto* ex = static_cast<std::byte*>(expanded_x.data());
  if (expanded_x.numel()) std::memset(ex, 0, size_t(expanded_x.numel()) * expanded_x.element_size());
  auto* es = expanded_scale.data_as<float>();
  std::fill(es, es + out_rows, 0.0f);
  auto* eri = expanded_row_idx.data_as<int32_t>();
  std::fill(eri, eri + nk, int32_t{-1});

  // Writes row `dst` of expanded_x / expanded_scale from token `tok` routed to expert `e`.
  Scratch<float> v(h);
  auto write_row = [&](int64_t dst, int64_t tok, int64_t e) {
    if (plan.quant_mode == -1) {
      copy_row(x, tok, ex, dst);
      if (scale.defined()) es[dst] = load_element_f32(scale.data(), scale.dtype(), tok * scale.strides()[0]);
      return;
    }
    auto* q = expanded_x.data_as<int8_t>() + dst * h;
    if (plan.quant_mode == 0) {
      const float s = load_element_f32(scale.data(), scale.dtype(), 0);
      const float o = load_element_f32(offset.data(), offset.dtype(), 0);
      for (int64_t j = 0; j < h; ++j) {
        const float xv = load_element_f32(x.data(), x.dtype(), offset2(x, tok, j));
        const float r = std::nearbyint(xv * s + o);  // fp32 multiply, fp32 add, round half to even
        q[j] = int8_t(std::fmin(127.0f, std::fmax(-128.0f, r)));
      }
      return;
    }
    // quant_mode 1: optional smooth scale, then the shared dynamic quantisation.
    const int64_t srow = (scale.defined() && scale.size(0) > 1) ? e - start : 0;
    for (int64_t j = 0; j < h; ++j) {
      float xv = load_element_f32(x.data(), x.dtype(), offset2(x, tok, j));
      if (scale.defined()) xv *= load_element_f32(scale.data(), scale.dtype(), offset2(scale, srow, j));
      v[j] = xv;
    }
    es[dst] = quantize_row_dynamic(v.data(), h, q);
  };

  if (!plan.drop_pad) {
    const int64_t valid = std::min(plan.rows, active);
    for (int64_t i = 0; i < valid; ++i) write_row(i, perm[i] / k, ids[perm[i]]);
    for (int64_t i = 0; i < active; ++i) {
      if (plan.row_idx_type == 0)
        eri[perm[i]] = int32_t(i);
      else
        eri[i] = int32_t(perm[i]);
    }
  } else {
    // The valid block is sorted by expert: count each expert's positions, keep the first C of each.
    int64_t prev = -1, j = 0;
    for (int64_t i = 0; i < active; ++i) {
      const int64_t t = perm[i], e = ids[t];
      if (e != prev) {
        prev = e;
        j = 0;
      }
      if (j < plan.capacity) {
        const int64_t d = e * plan.capacity + j;
        eri[t] = int32_t(d);
        write_row(d, t / k, e);
      }
      ++j;
    }
  }

  // Count output.
  if (plan.count_type < 0) return;
  Scratch<int64_t> c(end - start, 0);  // count_type >= 0 needs expert_num, so end - start <= E
  for (int64_t e : ids)
    if (e >= start && e < end) ++c[e - start];
  auto* cnt = expert_token_cumsum_or_count.data_as<int64_t>();
  if (plan.count_type == 2) {
    std::fill(cnt, cnt + expert_token_cumsum_or_count.numel(), int64_t{0});
    int64_t r = 0;
    for (int64_t e = start; e < end; ++e) {
      if (c[e - start] == 0) continue;
      cnt[2 * r] = e;
      cnt[2 * r + 1] = c[e - start];
      ++r;
    }
    // The (0, 0) terminator row (when r < E) is already written by the zero fill.
    return;
  }
  int64_t sum = 0;
  for (int64_t i = 0; i < c.size(); ++i) {
    sum += c[i];
    cnt[i] = plan.count_type == 0 ? sum : c[i];
  }
}

}  // namespace moefuse::reference
