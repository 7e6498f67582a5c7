// The kernels' side of the per-family prefetch settings (moefuse/cpu.h: cpu_family, prefetch_settings): each
// weight-streaming kernel reads its stream's distance and the hint once per call (prefetch_for, given the call's
// rows: below the stream's row threshold it gets "off") and prefetches its panels that far ahead (prefetch_ahead).
// Prefetch changes no bits: only which lines are in cache when.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moefuse::gemm::detail {

/// The weight streams the settings name, in PrefetchSettings' field order.
enum class PrefetchStream : int { bf16 = 0, int8 = 1, fp8 = 2, int4 = 3 };

/// One call's prefetch: `bytes` ahead of the line being read (0: off), into L1 (prefetcht0) or, nta, as
/// non-temporal (prefetchnta: the line is not kept in the outer caches, for weights read once).
struct Prefetch {
  int64_t bytes = 0;
  bool nta = false;
  bool on() const { return bytes > 0; }
};

/// The settings in effect for `stream` in a call over `rows` rows of activations: off (bytes = 0) when rows is below
/// the stream's row threshold (PrefetchSettings::*_rows). Cheap: three relaxed atomic loads; read it once per call.
Prefetch prefetch_for(PrefetchStream stream, int64_t rows);

/// Prefetches the line pf.bytes past p with pf's hint (a prefetch never faults: an address past the weights is
/// harmless). With pf.bytes = 0 it touches p's own line; callers skip it when !pf.on() where that matters.
__attribute__((always_inline)) inline void prefetch_ahead(const void* p, Prefetch pf) {
  const char* q = static_cast<const char*>(p) + pf.bytes;
  if (pf.nta) __builtin_prefetch(q, 0, 0);  // prefetchnta
  else __builtin_prefetch(q, 0, 3);         // prefetcht0
}

/// What to add to the address of a prefetch pf.bytes past byte `off` of one of the `np` panels a tile reads side by
/// side (`pstride` bytes apart, each `panel_bytes` long) so that it lands where the stream goes on. Inside the panel:
/// 0. Past its end the address would fall into the next panel, which this tile reads already; the same panel of the
/// next tile (the np panels after these) is np - 1 panels further. Without that move every tile but the first would
/// start np - 1 of its panels with pf.bytes read on demand (measured on the Zen 5: the W4A16 decode layer 15-20%
/// slower, one thread; docs/performance.md "Prefetch across tiles").
inline size_t next_tile_skip(int64_t off, int64_t panel_bytes, int np, size_t pstride, Prefetch pf) {
  return off + pf.bytes >= panel_bytes ? size_t(np - 1) * pstride : 0;
}

}  // namespace moefuse::gemm::detail
