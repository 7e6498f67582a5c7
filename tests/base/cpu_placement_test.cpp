// The probes' thread placements (base/cpu_placement.h) on made-up topologies: compact fills an LLC domain and a
// core's first thread before anything else, spread goes round the domains, and only distinct placements are kept.
#include "base/cpu_placement.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace moefuse {
namespace {

using probe::CpuSlot;

// Two LLC domains (CPUs 0-1 and 4-5 on domain 0, 2-3 and 6-7 on domain 2) of two cores each, two SMT threads a core
// (CPU i and i + 4 are siblings) — the numbering Linux gives such a machine.
std::vector<CpuSlot> two_domains_smt() {
  std::vector<CpuSlot> cpus;
  for (int i = 0; i < 8; ++i) cpus.push_back(CpuSlot{i, i % 4, i % 4 < 2 ? 0 : 2});
  return cpus;
}

TEST(CpuPlacement, CompactFillsOneDomainAndOneThreadPerCoreFirst) {
  const std::vector<CpuSlot> cpus = two_domains_smt();
  EXPECT_EQ(probe::compact_cpus(cpus, 2), (std::vector<int>{0, 1}));
  EXPECT_EQ(probe::compact_cpus(cpus, 4), (std::vector<int>{0, 1, 4, 5}));
  EXPECT_EQ(probe::compact_cpus(cpus, 8), (std::vector<int>{0, 1, 4, 5, 2, 3, 6, 7}));
  EXPECT_EQ(probe::compact_cpus(cpus, 9).size(), 8u);
}

TEST(CpuPlacement, SpreadGoesRoundTheDomains) {
  const std::vector<CpuSlot> cpus = two_domains_smt();
  EXPECT_EQ(probe::spread_cpus(cpus, 2), (std::vector<int>{0, 2}));
  EXPECT_EQ(probe::spread_cpus(cpus, 4), (std::vector<int>{0, 2, 1, 3}));
  EXPECT_EQ(probe::spread_cpus(cpus, 6), (std::vector<int>{0, 2, 1, 3, 4, 6}));
  EXPECT_EQ(probe::spread_cpus(cpus, 20).size(), 8u);
}

TEST(CpuPlacement, OnlyDistinctPlacementsAreMeasured) {
  const std::vector<CpuSlot> cpus = two_domains_smt();
  std::vector<probe::Placement> p = probe::placements(cpus, 4);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].name, "compact");
  EXPECT_EQ(p[1].name, "spread");
  EXPECT_EQ(p[1].cpus, (std::vector<int>{0, 2, 1, 3}));
  // Every CPU: the same set either way.
  p = probe::placements(cpus, 8);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].name, "compact");
  // More threads than CPUs: nothing to pin.
  EXPECT_TRUE(probe::placements(cpus, 9).empty());
  EXPECT_TRUE(probe::placements(cpus, 0).empty());
  // One LLC domain, two cores without SMT (this project's VM): one placement.
  const std::vector<CpuSlot> two{{0, 0, 0}, {1, 1, 0}};
  p = probe::placements(two, 2);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].cpus, (std::vector<int>{0, 1}));
  p = probe::placements(two, 1);
  ASSERT_EQ(p.size(), 1u);
}

TEST(CpuPlacement, AllowedCpusAreThisProcesssAndPinningWorks) {
  const std::vector<CpuSlot> cpus = probe::allowed_cpus();
  ASSERT_FALSE(cpus.empty());
  EXPECT_LE(cpus.size(), size_t(std::thread::hardware_concurrency()));
  bool pinned = false;
  std::thread([&] { pinned = probe::pin_current_thread(cpus.back().cpu); }).join();
  EXPECT_TRUE(pinned);
}

}  // namespace
}  // namespace moefuse
