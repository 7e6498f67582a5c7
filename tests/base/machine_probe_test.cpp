// The machine probes (base/machine_probe.h): every read loop adds what it reads at every stream count; the peak and
// bandwidth probes give positive rates for any thread count (never a particular speed); every instruction family is a
// row, measured exactly when the CPU has it and the build has its loop (AMX: at level amx, else absent with why; the
// AMX loops themselves run only where that level is, and skip with its reason elsewhere); every registry kernel maps
// to its family; the machine's identity (signature, ISA set, LLC, memory) is found.
#include "base/machine_probe.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "kernels/registry.h"
#include "moefuse/cpu.h"
#include "moefuse/numerics.h"

namespace moefuse {
namespace {

// Restores the ISA cap when a test lowered it.
struct IsaCap {
  explicit IsaCap(Isa cap) { set_max_isa(cap); }
  ~IsaCap() { set_max_isa(kTopIsa); }
};

std::vector<const probe::ReadLoop*> runnable_read_loops() {
  std::vector<const probe::ReadLoop*> loops{&probe::kReadScalar};
  if (detected_isa() >= Isa::avx2) loops.push_back(&probe::kReadYmm);
  if (detected_isa() >= Isa::avx512) loops.push_back(&probe::kReadZmm);
  return loops;
}

TEST(MachineProbe, ReadLoopsAddEveryWordAtEveryStreamCount) {
  // 64-bit words 1, 2, 3, ...: the sum of 1..n, whatever the loop's order; 7 and 9 blocks leave blocks over.
  for (size_t words : {16u, 32u, 7u * 16u, 9u * 16u, 1024u + 16u}) {
    std::vector<uint64_t> v(words);
    for (size_t i = 0; i < words; ++i) v[i] = i + 1;
    const uint64_t expected = uint64_t(words) * (words + 1) / 2;
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    for (const probe::ReadLoop* loop : runnable_read_loops())
      for (int streams : {1, 2, 3, 4, 8, 16})
        EXPECT_EQ(loop->sum(p, words * 8, streams), expected) << loop->name << ", " << words << " words, " << streams;
  }
  EXPECT_EQ(probe::kReadZmm.load_bytes, 64);
  EXPECT_EQ(probe::kReadYmm.load_bytes, 32);
  EXPECT_EQ(probe::kReadScalar.load_bytes, 8);
}

TEST(MachineProbe, StreamSumUsesTheWidestLoopTheIsaAllows) {
  std::vector<uint64_t> v(64, 3);
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  for (Isa isa : kAllIsas) {
    if (isa > detected_isa()) continue;
    IsaCap cap(isa);
    const probe::ReadLoop& loop = probe::widest_read_loop();
    const Isa level = active_isa();  // the cap, or lower under MOEFUSE_MAX_ISA
    EXPECT_EQ(&loop,
              level >= Isa::avx512 ? &probe::kReadZmm : level == Isa::avx2 ? &probe::kReadYmm : &probe::kReadScalar);
    EXPECT_EQ(probe::stream_sum(p, 64 * 8), 64u * 3u);
  }
}

TEST(MachineProbe, ReadBufferIsFilledAndAligned) {
  const probe::ReadBuffer buf(1000, 3);  // rounded up to 128-byte blocks, each thread writing its slice
  ASSERT_EQ(buf.size(), 1024u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % (2u << 20), 0u);
  for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf.data()[i], 1) << i;
}

TEST(MachineProbe, RatesArePositiveForAnyThreadCount) {
  const probe::ReadBuffer buf(size_t(4) << 20, 2);
  for (int threads : {1, 2, 3}) {
    EXPECT_GT(probe::measure_read_bandwidth(buf, threads, 2), 0) << threads;
    if (const probe::PeakLoop* f = probe::fp32_peak_loop()) {
      EXPECT_GT(probe::measure_peak(*f, threads, 1000, 2), 0);
    }
    if (const probe::PeakLoop* q = probe::int8_peak_loop()) {
      EXPECT_GT(probe::measure_peak(*q, threads, 1000, 2), 0);
    }
  }
}

TEST(MachineProbe, AmxLoopsRunAtLevelAmx) {
  if (active_isa() < Isa::amx) {
    GTEST_SKIP() << "the AMX loops run at level amx only: "
                 << (*amx_unused_reason() ? amx_unused_reason() : "the kernel level is capped below amx");
  }
  for (int threads : {1, 2, 3})
    for (const probe::PeakLoop* loop : {&probe::kTdpbf16ps, &probe::kTdpbssd}) {
      EXPECT_GT(probe::measure_peak(*loop, threads, 1000, 2), 0) << loop->name << ", " << threads;
      loop->run(1);  // the smallest call: configures, loads, one iteration, releases
    }
}

TEST(MachineProbe, ReadProbesCoverEveryStreamCountAndPlacement) {
  const probe::ReadBuffer buf(size_t(2) << 20, 1);
  const probe::ReadBandwidth r = probe::measure_read(buf, 1, 1);
  // Unpinned plus one pinned placement (one thread: compact and spread are the same CPU), 4 stream counts each.
  ASSERT_EQ(r.probes.size(), 8u);
  double best = 0;
  for (size_t i = 0; i < r.probes.size(); ++i) {
    const probe::ReadProbe& p = r.probes[i];
    EXPECT_EQ(p.placement, i < 4 ? "os" : "compact");
    EXPECT_EQ(p.cpus.size(), i < 4 ? 0u : 1u);
    EXPECT_EQ(p.streams, 1 << (i % 4));
    EXPECT_STREQ(p.loop, probe::widest_read_loop().name);
    EXPECT_GT(p.bytes_per_s, 0);
    best = std::max(best, p.bytes_per_s);
  }
  EXPECT_EQ(r.best, best);
  EXPECT_GT(r.plain, 0);
}

TEST(MachineProbe, EveryFamilyIsARowMeasuredExactlyWhenPresentWithALoop) {
  std::vector<std::string> ids;
  for (const probe::PeakFamily& f : probe::peak_families()) ids.push_back(f.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"fma_ymm", "fma_zmm", "maddwd_ymm", "maddwd_zmm", "dpbusd_zmm", "dpbusd_ymm",
                                           "dpbf16_zmm", "amx_bf16", "amx_int8"}));
  const CpuFeatures& c = cpu_features();
  EXPECT_EQ(probe::peak_families()[0].present(), c.os_avx && c.avx2 && c.fma);
  EXPECT_EQ(probe::peak_families()[1].present(), c.os_avx512 && c.avx512f);
  // AMX: present at level amx only, else absent with why (on a CPU without AMX: amx_unused_reason()).
  for (size_t i : {7u, 8u}) {
    const probe::PeakFamily& f = probe::peak_families()[i];
    EXPECT_EQ(f.present(), active_isa() >= Isa::amx) << f.id;
    ASSERT_NE(f.unused_reason, nullptr) << f.id;
    if (*amx_unused_reason()) {
      EXPECT_STREQ(f.unused_reason(), amx_unused_reason()) << f.id;
    }
    EXPECT_EQ(*f.unused_reason() == 0, f.present()) << f.id;
  }
  if (!(c.amx_tile && c.amx_int8 && c.amx_bf16)) {
    EXPECT_FALSE(probe::peak_families()[7].present());
    EXPECT_NE(std::string(probe::peak_families()[7].unused_reason()).find("the CPU"), std::string::npos);
  }
  if (detected_isa() >= Isa::amx) {  // a cap below amx makes AMX absent, with that as the reason
    IsaCap cap(Isa::avx512bf16);
    EXPECT_FALSE(probe::peak_families()[7].present());
    EXPECT_NE(std::string(probe::peak_families()[7].unused_reason()).find("capped"), std::string::npos);
  }
  // Every family has a loop; only AMX's say why they are absent.
  for (const probe::PeakFamily& f : probe::peak_families()) {
    EXPECT_NE(f.loop, nullptr) << f.id;
    EXPECT_EQ(f.unused_reason != nullptr, std::string(f.id).rfind("amx_", 0) == 0) << f.id;
  }
  const probe::ReadBuffer buf(size_t(1) << 20, 1);
  const probe::ProbeRound round = probe::probe_round(buf, 1);
  ASSERT_EQ(round.peaks.size(), probe::peak_families().size());
  for (size_t i = 0; i < round.peaks.size(); ++i) {
    const probe::PeakFamily& f = probe::peak_families()[i];
    EXPECT_EQ(round.peaks[i].family, &f);
    EXPECT_EQ(round.peaks[i].ops_per_s > 0, f.present() && f.loop != nullptr) << f.id;
    EXPECT_EQ(round.peak(&f), round.peaks[i].ops_per_s);
  }
  EXPECT_EQ(round.peak(nullptr), 0);
  EXPECT_GT(round.read.best, 0);
}

TEST(MachineProbe, EveryRegistryKernelMapsToItsFamily) {
  // Names only: nothing is called, so every level's names can be checked on any machine.
  auto id = [](const char* kernel) {
    const probe::PeakFamily* f = probe::family_of_kernel(kernel);
    return f ? std::string(f->id) : std::string("-");
  };
  // A kernel of level amx (its name ends in __amx) computes on the tiles: AMX-INT8 for int8 rows, else AMX-BF16.
  auto on_tiles = [](const std::string& kernel, const std::string& otherwise, bool int8) -> std::string {
    if (!kernel.ends_with("__amx")) return otherwise;
    return int8 ? "amx_int8" : "amx_bf16";
  };
  for (Numerics numerics : {Numerics::portable, Numerics::native})
    for (Isa isa : kAllIsas)
      for (bool vnni : {false, true}) {
        const gemm::GemmKernels k = gemm::select_gemm_kernels(isa, vnni, numerics);
        const std::string fp = isa == Isa::scalar ? "-" : isa == Isa::avx2 ? "fma_ymm" : "fma_zmm";
        for (const gemm::GemmFloatKernel* f : {&k.f32w, &k.f16w}) EXPECT_EQ(id(f->name), on_tiles(f->name, fp, false));
        // bf16 weights: vdpbf16ps where that kernel is used at this level (on this machine), else the FMA kernel.
        EXPECT_EQ(id(k.bf16w.name), on_tiles(k.bf16w.name, *bf16_dot_unused_reason(isa) ? fp : "dpbf16_zmm", false))
            << k.bf16w.name;
        if (k.bf16w_bf16a.fn) {
          EXPECT_EQ(id(k.bf16w_bf16a.name),
                    on_tiles(k.bf16w_bf16a.name, *bf16_dot_unused_reason(isa) ? fp : "dpbf16_zmm", false))
              << k.bf16w_bf16a.name;
        }
        const std::string s8 = isa == Isa::scalar  ? "-"
                               : isa == Isa::avx2  ? "maddwd_ymm"
                               : vnni              ? "dpbusd_zmm"
                                                   : "maddwd_zmm";
        EXPECT_EQ(id(k.s8.name), on_tiles(k.s8.name, s8, true)) << k.s8.name;
      }
  // Every row of level amx in the registry, by what the row says it takes (int8 A: the s8 and W4A8 ops).
  for (const kernels::KernelInfo& row : kernels::gemm_registry()) {
    if (row.isa != Isa::amx) continue;
    const bool int8 = row.op == kernels::Op::gemm_s8 || row.op == kernels::Op::gemm_u4s8_g32 ||
                      row.op == kernels::Op::gemm_u4s8_g64 || row.op == kernels::Op::gemm_u4s8_g128;
    EXPECT_EQ(id(row.name), int8 ? "amx_int8" : "amx_bf16") << row.name;
  }
  // Names of AMX kernels, listed or not (the W4A8 one is not written yet).
  EXPECT_EQ(id("gemm_s8_s32_32x32__amx"), "amx_int8");
  EXPECT_EQ(id("gemm_u4g32w_s8_f32_32x32__amx"), "amx_int8");
  EXPECT_EQ(id("gemm_bf16w_f32_32x32__amx"), "amx_bf16");
  EXPECT_EQ(id("gemm_bf16w_bf16a_f32_32x32__amx"), "amx_bf16");
  EXPECT_EQ(probe::family_of_kernel("something_else"), nullptr);
}

TEST(MachineProbe, LoopsFollowTheIsaInUse) {
  EXPECT_EQ(probe::fp32_peak_loop() != nullptr, active_isa() >= Isa::avx2);
  EXPECT_EQ(probe::int8_peak_loop() != nullptr, use_avx512_vnni());
  {
    IsaCap cap(Isa::scalar);
    EXPECT_EQ(probe::fp32_peak_loop(), nullptr);
    EXPECT_EQ(probe::int8_peak_loop(), nullptr);
  }
  if (detected_isa() >= Isa::avx2) {
    IsaCap cap(Isa::avx2);
    EXPECT_EQ(probe::fp32_peak_loop(), active_isa() == Isa::avx2 ? &probe::kFmaYmm : nullptr);  // or MOEFUSE_MAX_ISA
    EXPECT_EQ(probe::int8_peak_loop(), nullptr);
  }
  EXPECT_EQ(probe::kFmaZmm.ops_per_iter, 12 * 16 * 2);
  EXPECT_EQ(probe::kFmaYmm.ops_per_iter, 12 * 8 * 2);
  EXPECT_EQ(probe::kDpbusdZmm.ops_per_iter, 12 * 64 * 2);
  EXPECT_EQ(probe::kMaddwdYmm.ops_per_iter, 12 * 16 * 2);
  EXPECT_EQ(probe::kMaddwdZmm.ops_per_iter, 12 * 32 * 2);
  EXPECT_EQ(probe::kDpbusdYmm.ops_per_iter, 12 * 32 * 2);
  EXPECT_EQ(probe::kDpbf16Zmm.ops_per_iter, 12 * 32 * 2);
  // 4 tile products of 16 x 16 dot products of 32 bf16 pairs / 64 int8 pairs, in fewer iterations per probe.
  EXPECT_EQ(probe::kTdpbf16ps.ops_per_iter, 4 * 16 * 16 * 32 * 2);
  EXPECT_EQ(probe::kTdpbssd.ops_per_iter, 4 * 16 * 16 * 64 * 2);
  EXPECT_LT(probe::kTdpbf16ps.probe_iters, probe::kFmaZmm.probe_iters);
}

// The value of a "key : value" line of /proc/cpuinfo (its first processor); "" when absent.
std::string cpuinfo(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon);
    k.erase(k.find_last_not_of(" \t") + 1);
    if (k == key) return line.substr(line.find_first_not_of(" \t", colon + 1));
  }
  return "";
}

TEST(MachineProbe, TheMachinesIdentityIsFound) {
  const probe::CpuSignature s = probe::cpu_signature();
  if (!cpuinfo("cpu family").empty()) {
    EXPECT_EQ(std::to_string(s.family), cpuinfo("cpu family"));
    EXPECT_EQ(std::to_string(s.model), cpuinfo("model"));
    EXPECT_EQ(std::to_string(s.stepping), cpuinfo("stepping"));
  }
  const std::vector<std::string> isa = probe::isa_set();
  const std::set<std::string> set(isa.begin(), isa.end());
  EXPECT_EQ(set.count("avx2") == 1, cpu_features().os_avx && cpu_features().avx2);
  EXPECT_EQ(set.count("avx512f") == 1, cpu_features().os_avx512 && cpu_features().avx512f);
  EXPECT_EQ(set.count("amx_int8") == 1, cpu_features().os_amx && cpu_features().amx_int8);
  EXPECT_GT(probe::llc_bytes(), 0);
  EXPECT_FALSE(probe::cpu_model().empty());
  EXPECT_GT(probe::total_memory_bytes(), 0);
}

}  // namespace
}  // namespace moefuse
