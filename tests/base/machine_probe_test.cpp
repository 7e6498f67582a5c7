// The machine probes (base/machine_probe.h): stream_sum adds what it reads, in every variant; the peak and bandwidth
// probes give positive rates for any thread count (never a particular speed); the loops exist where the CPU has them;
// the LLC size and CPU name are found.
#include "base/machine_probe.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "moefuse/cpu.h"

namespace moefuse {
namespace {

// Restores the ISA cap when a test lowered it.
struct IsaCap {
  explicit IsaCap(Isa cap) { set_max_isa(cap); }
  ~IsaCap() { set_max_isa(Isa::avx512); }
};

TEST(MachineProbe, StreamSumAddsEveryWordInEveryVariant) {
  // 64-bit words 1, 2, 3, ...: the sum of 1..n, whatever the variant's order.
  for (size_t words : {16u, 32u, 1024u + 16u}) {
    std::vector<uint64_t> v(words);
    for (size_t i = 0; i < words; ++i) v[i] = i + 1;
    const uint64_t expected = uint64_t(words) * (words + 1) / 2;
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
      if (isa > detected_isa()) continue;
      IsaCap cap(isa);
      EXPECT_EQ(probe::stream_sum(p, words * 8), expected) << isa_name(isa) << ", " << words << " words";
    }
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

TEST(MachineProbe, LoopsFollowTheIsaInUse) {
  EXPECT_EQ(probe::fp32_peak_loop() != nullptr, active_isa() >= Isa::avx2);
  EXPECT_EQ(probe::int8_peak_loop() != nullptr, use_avx512_vnni());
  if (active_isa() == Isa::avx512) {
    EXPECT_STREQ(probe::fp32_peak_loop()->name, "vfmadd231ps_zmm");
  }
  {
    IsaCap cap(Isa::scalar);
    EXPECT_EQ(probe::fp32_peak_loop(), nullptr);
    EXPECT_EQ(probe::int8_peak_loop(), nullptr);
  }
  if (detected_isa() >= Isa::avx2) {
    IsaCap cap(Isa::avx2);
    EXPECT_EQ(probe::fp32_peak_loop(), &probe::kFmaYmm);
    EXPECT_EQ(probe::int8_peak_loop(), nullptr);
  }
  EXPECT_EQ(probe::kFmaZmm.ops_per_iter, 12 * 16 * 2);
  EXPECT_EQ(probe::kFmaYmm.ops_per_iter, 12 * 8 * 2);
  EXPECT_EQ(probe::kDpbusdZmm.ops_per_iter, 12 * 64 * 2);
}

TEST(MachineProbe, MeasureMachineFillsEveryField) {
  const probe::MachineLimits m = probe::measure_machine(2, size_t(8) << 20);
  EXPECT_EQ(m.threads, 2);
  EXPECT_GT(m.read_bytes_per_s, 0);
  EXPECT_EQ(m.read_buffer_bytes, int64_t(8) << 20);
  EXPECT_EQ(m.fp32_flops > 0, probe::fp32_peak_loop() != nullptr);
  EXPECT_EQ(m.int8_ops > 0, probe::int8_peak_loop() != nullptr);
  EXPECT_GT(m.llc_bytes, 0);
  EXPECT_EQ(m.llc_bytes, probe::llc_bytes());
  EXPECT_FALSE(m.cpu.empty());
}

}  // namespace
}  // namespace moefuse
