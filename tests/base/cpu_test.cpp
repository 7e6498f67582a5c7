#include <gtest/gtest.h>

#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "util/errors.h"

namespace moefuse {
namespace {

TEST(Cpu, LevelsAreConsistentWithFeatures) {
  const CpuFeatures& f = cpu_features();
  Isa isa = detected_isa();
  if (isa >= Isa::avx2) {
    EXPECT_TRUE(f.avx2 && f.fma && f.os_avx);
  }
  if (isa >= Isa::avx512) {
    EXPECT_TRUE(f.avx512f && f.avx512bw && f.os_avx512);
  }
  EXPECT_EQ(isa == Isa::avx512bf16, isa >= Isa::avx512 && f.avx512_bf16);
  if (f.os_avx512) {
    EXPECT_TRUE(f.os_avx);
  }
}

TEST(Cpu, CapLowersTheActiveLevelAndNeverRaisesIt) {
  const Isa detected = detected_isa();
  set_max_isa(Isa::scalar);
  EXPECT_EQ(active_isa(), Isa::scalar);
  EXPECT_FALSE(use_avx512_vnni());
  set_max_isa(kTopIsa);
  EXPECT_LE(int(active_isa()), int(detected));
}

TEST(Cpu, IsaNamesRoundTrip) {
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512bf16}) EXPECT_EQ(parse_isa(isa_name(i), "test"), i);
  EXPECT_THROWS_MSG(parse_isa("sse9", "MOEFUSE_MAX_ISA"), ValueError, "MOEFUSE_MAX_ISA",
                    "scalar, avx2, avx512 or avx512bf16", "sse9");
}

}  // namespace
}  // namespace moefuse
