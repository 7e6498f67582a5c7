// The ordering the gating oracles rank experts and groups by: numpy's argsort(-key, kind='stable').
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace moefuse::testing {

/// `ids` (any subset of key's indices) sorted by descending key, NaN last, equal keys in ascending id order.
inline std::vector<int64_t> argsort_desc(const std::vector<float>& key, std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) {
    const float ka = key[size_t(a)], kb = key[size_t(b)];
    if (std::isnan(ka)) return false;
    if (std::isnan(kb)) return true;
    return ka > kb;
  });
  return ids;
}

/// Every index of `key`, so sorted.
inline std::vector<int64_t> argsort_desc(const std::vector<float>& key) {
  std::vector<int64_t> ids(key.size());
  std::iota(ids.begin(), ids.end(), int64_t{0});
  return argsort_desc(key, std::move(ids));
}

}  // namespace moefuse::testing
