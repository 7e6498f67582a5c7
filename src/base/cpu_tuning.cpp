// CPU family from CPUID, and the software prefetch each family's weight streams get (moefuse/cpu.h).
#include "base/cpu_tuning.h"

#include <array>
#include <atomic>
#include <charconv>
#include <cstdlib>
#include <string>

#include "moefuse/cpu.h"
#include "moefuse/error.h"

namespace moefuse {
namespace {

// The family's prefetch settings. Software prefetch changes no bits, only speed; an entry not measured on that
// family is the generic one (and says so): a guess for a CPU we do not have would be no better than the default.
// Sweep a new CPU with MOEFUSE_PREFETCH and gemm_bench (docs/performance.md, "Software prefetch per CPU family").
//
// Generic = what the kernels did before the table existed: the int4 and FP8 kernels prefetch their panels 4 KB
// ahead into L1 (measured on the Zen 5 when those kernels were written: without it decode streams at about half the
// read bandwidth), the bf16 and int8 kernels do not prefetch (their 64-byte rows keep more lines in flight for the
// hardware prefetchers; earlier sessions measured no gain on Zen 3 and Zen 5, the table's Zen 5 sweep below some).
// Every stream from the first row (rows 0).
constexpr PrefetchSettings kGeneric{/*bf16=*/0, /*int8=*/0, /*fp8=*/4096, /*int4=*/4096, PrefetchHint::t0};

PrefetchSettings family_entry(CpuFamily f) {
  switch (f) {
    // Zen 5 (EPYC, family 26 model 2; 2-core VM, 32 MiB L3), measured 2026-12-03 16:39-17:02 UTC: gemm_bench,
    // 2048 x 2048, one thread, cold weights, --benchmark_min_time=0.3, MOEFUSE_PREFETCH=all=D,hint=H for D in 0, 1K,
    // 2K, 4K, 8K and H in t0, nta, every setting once per round with memory/stream_read_256MB (28-39 GB/s), four
    // rounds in alternating order; CPU time, us, lowest to highest of the four:
    //   int8 (VNNI)       M = 1: off 112-169, 8K 130-181 (t0) / 122-145 (nta); M = 8: off 170-307, 4K 133-183,
    //                     8K 126-163 (t0) / 124-144 (nta): faster at M = 8 only.
    //   bf16 (vdpbf16ps)  M = 1: off 198-346, 4K 256-287 (t0) / 240-302 (nta); M = 8: off 336-556, 4K 370-403 (t0) /
    //                     308-379 (nta): a smaller gain at M = 8, inside the spread at M = 1.
    //   FP8 (vdpbf16ps)   M = 1: off 180-244, 2K 155-172, 4K 137-163, 8K 141-174; M = 8: off 600-856, 4K 362-384,
    //                     8K 367-448: 4 KB (generic).
    //   int4 W4A16 G 128  M = 1: off 207-234, 2K 107-132, 4K 91-107, 8K 107-123; M = 8: off 354-466, 4K 193-247,
    //                     8K 200-294: 4 KB (generic). W4A8 G 128 (the same key) would take 8 KB (M = 8: 103-111
    //                     against 114-125 at 4K; M = 1 level); W4A16 is the larger share of decode.
    //   The hint: nta within the spread of t0 everywhere at one thread: t0.
    // The layer (moefuse bench --preset olmoe-1b-7b --tokens 1,8 --quant none,w8a8,fp8,w4a16 --paths chain --iters 7,
    // 2 threads, four pairs alternating with bf16=4096,int8=8192): at T = 1 bf16 and w8a8 were slower with prefetch
    // in 7 of 8 pairs, at T = 8 faster in 6 of 8, within a drift of up to 2x. Decode at T = 1 weighs most, so bf16
    // and int8 prefetch only from some rows on (the call's M: in the layer, the tokens one expert gets).
    // Row thresholds, 2026-12-03 20:18-20:36 UTC (same machine, shared, load 3-9): gemm_bench as above with M = 1, 2,
    // 4, 8, 16, MOEFUSE_PREFETCH=bf16=D,int8=D for D in 0, 4K, 8K, four rounds alternating; CPU time, us, and in how
    // many rounds faster than off:
    //   bf16  M = 1: off 259-322, 4K 242-294 (3 of 4); M = 4: off 274-401, 4K 244-288 (4/4); M = 8: off 373-430,
    //         4K 339-396 (4/4); M = 16: off 516-571, 4K 519-533 (3/4).
    //   int8  M = 1: off 124-159, 8K 136-150 (2/4); M = 4: off 147-182, 8K 148-164 (3/4); M = 8: off 180-213, 8K
    //         120-138 (4/4); M = 16: off 271-332, 8K 247-281 (3/4).
    // The layer, in-process pairs (bench/layer_scaling --preset olmoe-1b-7b --threads 2 --rounds 3 --forwards 20
    // --paths chain --prefetch 'A;B', both orders: the variant run second gains from the first's weights in L3):
    // bf16=4K@4 faster at T = 32 and 64 in 12 of 12 rounds (3-10%); int8=8K@8 faster at T = 64 in 6 of 6 (4-10%),
    // level at T = 32 (3 of 6; 8K@4 too) and T = 8 (few experts get 4 rows there); T = 1 runs the code without
    // prefetch (M = 1). docs/performance.md, "Row thresholds", has the figures.
    // Rechecked after prefetch across tiles (next_tile_skip; 2026-12-04 00:01 UTC, both cores free): bf16 from one
    // row 0-4% slower at T = 1 on two threads in 5 of 8 pairs (faster on one thread), int8 4 KB from one row within
    // 3%: the thresholds stay ("Prefetch across tiles").
    case CpuFamily::amd_zen5:
      return {/*bf16=*/4096, /*int8=*/8192, /*fp8=*/4096, /*int4=*/4096, PrefetchHint::t0,
              /*bf16_rows=*/4, /*int8_rows=*/8, /*fp8_rows=*/0, /*int4_rows=*/0};
    // Not measured with the table (bf16/int8 without prefetch were measured on Zen 3 and Zen 4 earlier, the int4 and
    // FP8 distances not): generic.
    case CpuFamily::amd_zen2:
    case CpuFamily::amd_zen3:
    case CpuFamily::amd_zen4: return kGeneric;
    // Sapphire Rapids class (Xeon VM, family 6 model 207 stepping 2, 16 cores, AMX, 300 MiB LLC), measured
    // 2026-12-04 15:55 UTC with the layer at every core: bench/layer_scaling --preset olmoe-1b-7b --threads 16
    // --rounds 3 --forwards 20 --paths chain --prefetch 'A;B;C' (MOEFUSE_MAX_ISA=avx512bf16, portable), median ms of
    // the three rounds:
    //   bf16 T = 1:  off 0.843 / 0.773 / 0.795, 4K 0.749 / 0.683 / 0.675, 8K 0.741 / 0.695 / 0.685: 4 KB, 11-15%
    //                faster;
    //   bf16 T = 8:  off 4.66 / 4.40 / 4.39, 4K 3.83 / 3.75 / 3.62, 8K 4.07 / 3.81 / 3.84: 4 KB, 15-18% faster;
    //   int8 T = 1:  off 0.394 / 0.347 / 0.334, 4K 0.391 / 0.371 / 0.335, 8K 0.385 / 0.362 / 0.365: off (level);
    //   fp8 T = 1:   off 0.593 / 0.573 / 0.561, 4K 0.446 / 0.417 / 0.406, 8K 0.453 / 0.427 / 0.417: 4 KB (generic).
    // int4 not swept: generic. bf16 from the first row (the sweep's setting): unlike the Zen 5, the Xeon's decode
    // gains at T = 1 too.
    case CpuFamily::intel_sapphire_rapids:
      return {/*bf16=*/4096, /*int8=*/0, /*fp8=*/4096, /*int4=*/4096, PrefetchHint::t0};
    // Not measured: generic. On Xeons the hardware prefetchers track fewer streams per core, and bf16 decode read 8.3
    // GB/s per core where a plain read got 13.5 (an earlier session's figures): the first entries to sweep.
    case CpuFamily::intel_skylake_sp:
    case CpuFamily::intel_icelake_sp:
    case CpuFamily::intel_granite_rapids:
    case CpuFamily::generic: return kGeneric;
  }
  return kGeneric;
}

// Whether bf16, FP8 and W4A16 (int4) weights run on vdpbf16ps (where it is usable) rather than on the fp32 FMA
// kernels, which give the same bits (gemm.h: the bf16 contract is vdpbf16ps's arithmetic, and the FMA kernels compute
// it).
//   Sapphire Rapids class (the machine above, 2026-12-04): vdpbf16ps retires at half the fp32 FMA rate (bench peaks:
//   dpbf16_zmm 1.19 TFLOP/s against fma_zmm 2.51 at 16 cores), and the FMA kernels win wherever compute counts:
//   `moefuse bench --preset olmoe-1b-7b --tokens 1,8,512,2048 --quant none,fp8 --paths chain --iters 5 --threads 16`
//   with MOEFUSE_MAX_ISA=avx512 against avx512bf16 (one process each, minutes apart): bf16 T = 512 37.9 against
//   61.2 ms, T = 2048 153 against 227 ms; FP8 T = 512 42.6 against 73.3, T = 2048 156 against 249; decode level (bf16
//   T = 1 0.998 / 1.027 ms, FP8 0.533 / 0.591). One core, gemm_bench 2048 x 2048: bf16 M = 8 1.01 against 1.16 ms,
//   M = 512 30.5 against 53.5 ms; W4A16 G = 128 (a later run on the same machine) M = 1 0.20 against 0.24 ms, M = 8
//   0.62 against 1.09, M = 64 7.9 against 8.4. So that family takes the FMA kernels.
//   AMD Zen 4 / Zen 5: vdpbf16ps at the FMA's rate per pair, i.e. twice the flops (Zen 5: bf16 prefill at T = 2048
//   79% of the dpbf16 peak): vdpbf16ps.
bool family_bf16_dot(CpuFamily f) { return f != CpuFamily::intel_sapphire_rapids; }

constexpr int64_t kMaxPrefetchBytes = int64_t(1) << 20;
constexpr int64_t kMaxPrefetchRows = int64_t(1) << 20;

[[noreturn]] void bad(std::string_view source, std::string_view what) {
  throw ValueError(std::string(source) + ": " + std::string(what));
}

// "4096", "4k" or "4K" (x 1024): 0 .. kMaxPrefetchBytes.
int32_t parse_bytes(std::string_view key, std::string_view text, std::string_view source) {
  std::string_view digits = text;
  int64_t unit = 1;
  if (!digits.empty() && (digits.back() == 'k' || digits.back() == 'K')) digits.remove_suffix(1), unit = 1024;
  int64_t v = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || v < 0 ||
      v > kMaxPrefetchBytes / unit)
    bad(source, "key \"" + std::string(key) + "\": expected a distance in bytes from 0 (off) to " +
                    std::to_string(kMaxPrefetchBytes) + " (a K suffix multiplies by 1024), got \"" +
                    std::string(text) + "\"");
  return int32_t(v * unit);
}

// A stream's value: a distance (parse_bytes), optionally "@R" with R rows from 0 to kMaxPrefetchRows.
struct StreamValue {
  int32_t bytes, rows;
};
StreamValue parse_stream(std::string_view key, std::string_view text, std::string_view source) {
  const size_t at = text.find('@');
  if (at == std::string_view::npos) return {parse_bytes(key, text, source), 0};
  const std::string_view rows = text.substr(at + 1);
  int64_t r = -1;
  const auto [end, ec] = std::from_chars(rows.data(), rows.data() + rows.size(), r);
  if (rows.empty() || ec != std::errc() || end != rows.data() + rows.size() || r < 0 || r > kMaxPrefetchRows)
    bad(source, "key \"" + std::string(key) + "\": expected rows after @ from 0 to " +
                    std::to_string(kMaxPrefetchRows) + " (prefetch in calls over at least that many rows), got \"" +
                    std::string(text) + "\"");
  return {parse_bytes(key, text.substr(0, at), source), int32_t(r)};
}

PrefetchSettings initial_settings() {
  const PrefetchSettings family = family_prefetch(cpu_family());
  const char* v = std::getenv("MOEFUSE_PREFETCH");
  if (!v || !*v) return family;
  return parse_prefetch(v, family, "MOEFUSE_PREFETCH");
}

// The settings in effect, one atomic per field: kernels read their stream's distance and the hint once per call, and
// a setter racing with a call gives that call either value of a field (both correct: prefetch changes no bits).
struct Current {
  static constexpr int kRows = 5;                 // index of bf16_rows: stream i's rows at kRows + i
  std::array<std::atomic<int32_t>, 9> v;  // bf16, int8, fp8, int4, hint, bf16_rows, int8_rows, fp8_rows, int4_rows
  explicit Current(const PrefetchSettings& s) { store(s); }
  void store(const PrefetchSettings& s) {
    const int32_t f[9] = {s.bf16,      s.int8,      s.fp8,      s.int4,     int32_t(s.hint),
                          s.bf16_rows, s.int8_rows, s.fp8_rows, s.int4_rows};
    for (size_t i = 0; i < 9; ++i) v[i].store(f[i], std::memory_order_relaxed);
  }
  int32_t get(int i) const { return v[size_t(i)].load(std::memory_order_relaxed); }
};

Current& current() {
  static Current c(initial_settings());  // MOEFUSE_PREFETCH read once; a bad value throws (and is read again)
  return c;
}

}  // namespace

CpuFamily classify_cpu(std::string_view vendor, int family, int model) {
  if (vendor == "GenuineIntel" && family == 6) {
    switch (model) {
      case 0x55: return CpuFamily::intel_skylake_sp;  // Skylake-SP, Cascade Lake, Cooper Lake
      case 0x6a:
      case 0x6c: return CpuFamily::intel_icelake_sp;  // Ice Lake-SP, Ice Lake-D
      case 0x8f:
      case 0xcf: return CpuFamily::intel_sapphire_rapids;  // Sapphire Rapids, Emerald Rapids
      case 0xad:
      case 0xae: return CpuFamily::intel_granite_rapids;  // Granite Rapids (-X, -D)
      default: return CpuFamily::generic;
    }
  }
  if (vendor == "AuthenticAMD") {
    // Model ranges as the vendor's revision guides (and Linux's Zen feature flags) group them.
    if (family == 0x17 && ((model >= 0x30 && model <= 0x4f) || (model >= 0x60 && model <= 0x7f) ||
                           (model >= 0x90 && model <= 0x91) || (model >= 0xa0 && model <= 0xaf)))
      return CpuFamily::amd_zen2;
    if (family == 0x19 && (model <= 0x0f || (model >= 0x20 && model <= 0x5f))) return CpuFamily::amd_zen3;
    if (family == 0x19 && ((model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0xaf)))
      return CpuFamily::amd_zen4;
    if (family == 0x1a && (model <= 0x2f || (model >= 0x40 && model <= 0x4f) || (model >= 0x60 && model <= 0x7f)))
      return CpuFamily::amd_zen5;
  }
  return CpuFamily::generic;
}

CpuFamily cpu_family() {
  static const CpuFamily f = [] {
    const CpuFeatures& c = cpu_features();
    return classify_cpu(c.vendor, c.family, c.model);
  }();
  return f;
}

std::string_view cpu_family_name(CpuFamily f) {
  switch (f) {
    case CpuFamily::generic: return "generic";
    case CpuFamily::intel_skylake_sp: return "intel-skylake-sp";
    case CpuFamily::intel_icelake_sp: return "intel-icelake-sp";
    case CpuFamily::intel_sapphire_rapids: return "intel-sapphire-rapids";
    case CpuFamily::intel_granite_rapids: return "intel-granite-rapids";
    case CpuFamily::amd_zen2: return "amd-zen2";
    case CpuFamily::amd_zen3: return "amd-zen3";
    case CpuFamily::amd_zen4: return "amd-zen4";
    case CpuFamily::amd_zen5: return "amd-zen5";
  }
  return "?";
}

PrefetchSettings family_prefetch(CpuFamily f) { return family_entry(f); }

bool family_prefers_bf16_dot(CpuFamily f) { return family_bf16_dot(f); }

bool prefer_bf16_dot() {
  static const bool prefer = [] {
    const char* v = std::getenv("MOEFUSE_BF16_DOT");
    if (!v || !*v) return family_bf16_dot(cpu_family());
    const std::string_view t(v);
    if (t == "on") return true;
    if (t == "off") return false;
    bad("MOEFUSE_BF16_DOT", "expected on or off (unset: the CPU family's choice), got \"" + std::string(t) + "\"");
  }();
  return prefer;
}

PrefetchSettings parse_prefetch(std::string_view spec, const PrefetchSettings& base, std::string_view source) {
  PrefetchSettings s = base;
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    const std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos)
      bad(source, "expected key=value items (keys bf16, int8, fp8, int4, all, hint) separated by commas, got \"" +
                      std::string(item) + "\"");
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    const auto stream = [&](int32_t& bytes, int32_t& rows) {
      const StreamValue v = parse_stream(key, value, source);
      bytes = v.bytes, rows = v.rows;
    };
    if (key == "hint") {
      if (value == "t0") s.hint = PrefetchHint::t0;
      else if (value == "nta") s.hint = PrefetchHint::nta;
      else bad(source, "key \"hint\": expected t0 or nta, got \"" + std::string(value) + "\"");
    } else if (key == "bf16") {
      stream(s.bf16, s.bf16_rows);
    } else if (key == "int8") {
      stream(s.int8, s.int8_rows);
    } else if (key == "fp8") {
      stream(s.fp8, s.fp8_rows);
    } else if (key == "int4") {
      stream(s.int4, s.int4_rows);
    } else if (key == "all") {
      stream(s.bf16, s.bf16_rows);
      s.int8 = s.fp8 = s.int4 = s.bf16;
      s.int8_rows = s.fp8_rows = s.int4_rows = s.bf16_rows;
    } else {
      bad(source, "unknown key \"" + std::string(key) + "\": expected bf16, int8, fp8, int4, all or hint");
    }
  }
  return s;
}

std::string prefetch_text(const PrefetchSettings& s) {
  const auto stream = [](int32_t bytes, int32_t rows) {
    std::string t = std::to_string(bytes);
    if (rows != 0) t += '@', t += std::to_string(rows);
    return t;
  };
  return "bf16=" + stream(s.bf16, s.bf16_rows) + ",int8=" + stream(s.int8, s.int8_rows) +
         ",fp8=" + stream(s.fp8, s.fp8_rows) + ",int4=" + stream(s.int4, s.int4_rows) +
         ",hint=" + (s.hint == PrefetchHint::nta ? "nta" : "t0");
}

PrefetchSettings prefetch_settings() {
  const Current& c = current();
  return {c.get(0), c.get(1), c.get(2), c.get(3), PrefetchHint(c.get(4)), c.get(5), c.get(6), c.get(7), c.get(8)};
}

void set_prefetch_settings(const PrefetchSettings& s) {
  for (int32_t b : {s.bf16, s.int8, s.fp8, s.int4})
    if (b < 0 || b > kMaxPrefetchBytes)
      throw ValueError("set_prefetch_settings: distances must be 0 (off) .. " + std::to_string(kMaxPrefetchBytes) +
                       " bytes, got " + std::to_string(b));
  for (int32_t r : {s.bf16_rows, s.int8_rows, s.fp8_rows, s.int4_rows})
    if (r < 0 || r > kMaxPrefetchRows)
      throw ValueError("set_prefetch_settings: row thresholds must be 0 .. " + std::to_string(kMaxPrefetchRows) +
                       ", got " + std::to_string(r));
  if (s.hint != PrefetchHint::t0 && s.hint != PrefetchHint::nta)
    throw ValueError("set_prefetch_settings: hint must be PrefetchHint::t0 or PrefetchHint::nta");
  current().store(s);
}

void reset_prefetch_settings() { current().store(initial_settings()); }

namespace gemm::detail {

Prefetch prefetch_for(PrefetchStream stream, int64_t rows) {
  const Current& c = current();
  if (rows < c.get(Current::kRows + int(stream))) return {0, false};
  return {c.get(int(stream)), c.get(4) == int32_t(PrefetchHint::nta)};
}

}  // namespace gemm::detail
}  // namespace moefuse
