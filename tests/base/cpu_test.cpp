#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

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
  EXPECT_EQ(isa >= Isa::avx512bf16, isa >= Isa::avx512 && f.avx512_bf16);
  EXPECT_EQ(isa == Isa::amx, *amx_unused_reason() == 0);
  if (isa == Isa::amx) {
    EXPECT_TRUE(f.amx_tile && f.amx_int8 && f.amx_bf16 && f.os_amx);
  }
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

TEST(Cpu, WithoutMaxIsaEveryDetectedLevelIsUsed) {
  const char* env = std::getenv("MOEFUSE_MAX_ISA");
  if (env && *env) GTEST_SKIP() << "MOEFUSE_MAX_ISA is set: " << env;
  set_max_isa(kTopIsa);
  EXPECT_EQ(kDefaultIsaCap, kTopIsa);
  EXPECT_EQ(active_isa(), detected_isa());
}

TEST(Cpu, IsaNamesRoundTrip) {
  for (Isa i : kAllIsas) EXPECT_EQ(parse_isa(isa_name(i), "test"), i);
  EXPECT_THROWS_MSG(parse_isa("sse9", "MOEFUSE_MAX_ISA"), ValueError, "MOEFUSE_MAX_ISA",
                    "scalar, avx2, avx512, avx512bf16 or amx", "sse9");
}

TEST(CpuFamily, ClassifiesTheVendorsFamiliesAndModels) {
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x1a, 0x02), CpuFamily::amd_zen5);  // EPYC 9005 (this project's Zen 5)
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x1a, 0x44), CpuFamily::amd_zen5);
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x1a, 0x50), CpuFamily::generic);  // not a Zen 5 range
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x19, 0x11), CpuFamily::amd_zen4);  // Genoa
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x19, 0x61), CpuFamily::amd_zen4);
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x19, 0x01), CpuFamily::amd_zen3);  // Milan
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x19, 0x21), CpuFamily::amd_zen3);
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x17, 0x31), CpuFamily::amd_zen2);  // Rome
  EXPECT_EQ(classify_cpu("AuthenticAMD", 0x17, 0x01), CpuFamily::generic);   // Zen 1
  EXPECT_EQ(classify_cpu("GenuineIntel", 6, 0x55), CpuFamily::intel_skylake_sp);
  EXPECT_EQ(classify_cpu("GenuineIntel", 6, 0x6a), CpuFamily::intel_icelake_sp);
  EXPECT_EQ(classify_cpu("GenuineIntel", 6, 0x8f), CpuFamily::intel_sapphire_rapids);
  EXPECT_EQ(classify_cpu("GenuineIntel", 6, 0xcf), CpuFamily::intel_sapphire_rapids);  // Emerald Rapids
  EXPECT_EQ(classify_cpu("GenuineIntel", 6, 0xad), CpuFamily::intel_granite_rapids);
  EXPECT_EQ(classify_cpu("GenuineIntel", 6, 0x9e), CpuFamily::generic);  // a client core
  EXPECT_EQ(classify_cpu("AuthenticAMD", 6, 0x55), CpuFamily::generic);  // the model of another vendor
  EXPECT_EQ(classify_cpu("", 0, 0), CpuFamily::generic);
  const CpuFeatures& f = cpu_features();
  EXPECT_EQ(cpu_family(), classify_cpu(f.vendor, f.family, f.model));
  EXPECT_EQ(cpu_family_name(CpuFamily::amd_zen5), "amd-zen5");
  EXPECT_EQ(cpu_family_name(CpuFamily::intel_sapphire_rapids), "intel-sapphire-rapids");
}

TEST(CpuFamily, EveryEntryIsTheGenericOneOrMeasured) {
  // The generic entry is what the kernels did before the table: int4 and FP8 4 KB ahead into L1, bf16 and int8 off.
  const PrefetchSettings generic = family_prefetch(CpuFamily::generic);
  EXPECT_EQ(generic, (PrefetchSettings{0, 0, 4096, 4096, PrefetchHint::t0}));
  for (CpuFamily f : {CpuFamily::intel_skylake_sp, CpuFamily::intel_icelake_sp, CpuFamily::intel_granite_rapids,
                      CpuFamily::amd_zen2, CpuFamily::amd_zen3, CpuFamily::amd_zen4})
    EXPECT_EQ(family_prefetch(f), generic) << cpu_family_name(f) << ": not measured, so generic";
  // Measured (cpu_tuning.cpp): the Sapphire Rapids class streams bf16 4 KB ahead from the first row, int8 off.
  EXPECT_EQ(family_prefetch(CpuFamily::intel_sapphire_rapids),
            (PrefetchSettings{4096, 0, 4096, 4096, PrefetchHint::t0}));
  // vdpbf16ps at half the FMA rate there: bf16, FP8 and W4A16 weights on the FMA kernels; elsewhere vdpbf16ps.
  EXPECT_FALSE(family_prefers_bf16_dot(CpuFamily::intel_sapphire_rapids));
  for (CpuFamily f : {CpuFamily::generic, CpuFamily::amd_zen4, CpuFamily::amd_zen5, CpuFamily::intel_granite_rapids})
    EXPECT_TRUE(family_prefers_bf16_dot(f)) << cpu_family_name(f);
}

TEST(Prefetch, ParsesKeysOverTheBaseAndNamesWhatIsWrong) {
  const PrefetchSettings base{1, 2, 3, 4, PrefetchHint::t0};
  EXPECT_EQ(parse_prefetch("", base, "X"), base);
  EXPECT_EQ(parse_prefetch("int4=4096,fp8=4K,bf16=0,hint=nta", base, "X"),
            (PrefetchSettings{0, 2, 4096, 4096, PrefetchHint::nta}));
  EXPECT_EQ(parse_prefetch("all=2k,int8=64,", base, "X"), (PrefetchSettings{2048, 64, 2048, 2048, PrefetchHint::t0}));
  EXPECT_EQ(parse_prefetch("int4=1048576", base, "X").int4, 1 << 20);
  const PrefetchSettings s{512, 0, 8192, 1024, PrefetchHint::nta};
  EXPECT_EQ(parse_prefetch(prefetch_text(s), {}, "X"), s);
  EXPECT_EQ(prefetch_text(s), "bf16=512,int8=0,fp8=8192,int4=1024,hint=nta");
  EXPECT_THROWS_MSG(parse_prefetch("int4=-1", base, "MOEFUSE_PREFETCH"), ValueError, "MOEFUSE_PREFETCH", "\"int4\"",
                    "expected a distance in bytes from 0 (off) to 1048576", "got \"-1\"");
  EXPECT_THROWS_MSG(parse_prefetch("fp8=4M", base, "MOEFUSE_PREFETCH"), ValueError, "\"fp8\"", "got \"4M\"");
  EXPECT_THROWS_MSG(parse_prefetch("bf16=2048K", base, "MOEFUSE_PREFETCH"), ValueError, "\"bf16\"", "2048K");
  EXPECT_THROWS_MSG(parse_prefetch("int8=", base, "MOEFUSE_PREFETCH"), ValueError, "\"int8\"", "got \"\"");
  EXPECT_THROWS_MSG(parse_prefetch("hint=t1", base, "MOEFUSE_PREFETCH"), ValueError, "\"hint\"",
                    "expected t0 or nta", "got \"t1\"");
  EXPECT_THROWS_MSG(parse_prefetch("int2=64", base, "MOEFUSE_PREFETCH"), ValueError, "MOEFUSE_PREFETCH",
                    "unknown key \"int2\"", "bf16, int8, fp8, int4, all or hint");
  EXPECT_THROWS_MSG(parse_prefetch("4096", base, "MOEFUSE_PREFETCH"), ValueError, "key=value", "got \"4096\"");
}

TEST(Prefetch, ParsesRowThresholdsAfterTheDistance) {
  PrefetchSettings base{1, 2, 3, 4, PrefetchHint::t0, 5, 6, 7, 8};
  PrefetchSettings want = base;
  want.bf16 = 4096, want.bf16_rows = 4, want.int8 = 8192, want.int8_rows = 0;  // no @: from the first row
  EXPECT_EQ(parse_prefetch("bf16=4K@4,int8=8192", base, "X"), want);
  EXPECT_EQ(parse_prefetch("fp8=0@1", base, "X").fp8_rows, 1);
  EXPECT_EQ(parse_prefetch("int4=64@1048576", base, "X").int4_rows, 1 << 20);
  EXPECT_EQ(parse_prefetch("all=2K@3", base, "X"),
            (PrefetchSettings{2048, 2048, 2048, 2048, PrefetchHint::t0, 3, 3, 3, 3}));
  const PrefetchSettings s{4096, 8192, 0, 1024, PrefetchHint::nta, 4, 0, 2, 1};
  EXPECT_EQ(prefetch_text(s), "bf16=4096@4,int8=8192,fp8=0@2,int4=1024@1,hint=nta");
  EXPECT_EQ(parse_prefetch(prefetch_text(s), base, "X"), s);
  // Bad rows, and a bad distance before @ (checked as without it): what the message names.
  const struct {
    const char* spec;
    std::vector<std::string> names;
  } bad[] = {
      {"bf16=4K@", {"key \"bf16\"", "expected rows after @ from 0 to 1048576", "got \"4K@\""}},
      {"int8=8K@-2", {"\"int8\"", "got \"8K@-2\""}},
      {"fp8=4K@1048577", {"\"fp8\"", "rows after @", "1048577"}},
      {"int4=4K@2x", {"\"int4\"", "got \"4K@2x\""}},
      {"all=4K@4@4", {"\"all\"", "4K@4@4"}},
      {"bf16=4M@4", {"\"bf16\"", "expected a distance in bytes", "got \"4M\""}},
      {"bf16=@4", {"\"bf16\"", "expected a distance in bytes", "got \"\""}},
  };
  for (const auto& b : bad) {
    try {
      (void)parse_prefetch(b.spec, base, "MOEFUSE_PREFETCH");
      ADD_FAILURE() << b.spec << ": no ValueError";
    } catch (const ValueError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind("MOEFUSE_PREFETCH: ", 0), 0u) << what;
      for (const std::string& n : b.names) EXPECT_NE(what.find(n), std::string::npos) << what << " lacks " << n;
    }
  }
}

TEST(Prefetch, TheSetterReplacesTheSettingsAndResetRestoresThem) {
  const PrefetchSettings before = prefetch_settings();
  const PrefetchSettings s{64, 128, 0, 8192, PrefetchHint::nta, 1, 2, 3, 4};
  set_prefetch_settings(s);
  EXPECT_EQ(prefetch_settings(), s);
  EXPECT_THROWS_MSG(set_prefetch_settings({-1, 0, 0, 0, PrefetchHint::t0}), ValueError, "set_prefetch_settings",
                    "got -1");
  EXPECT_THROWS_MSG(set_prefetch_settings({0, 0, 0, 0, PrefetchHint(7)}), ValueError, "hint");
  EXPECT_THROWS_MSG(set_prefetch_settings({0, 0, 0, 0, PrefetchHint::t0, 0, -1, 0, 0}), ValueError,
                    "set_prefetch_settings", "row thresholds", "got -1");
  EXPECT_THROWS_MSG(set_prefetch_settings({0, 0, 0, 0, PrefetchHint::t0, 0, 0, 0, (1 << 20) + 1}), ValueError,
                    "row thresholds", "got 1048577");
  EXPECT_EQ(prefetch_settings(), s);  // a rejected call changes nothing
  reset_prefetch_settings();
  EXPECT_EQ(prefetch_settings(), before);
}

}  // namespace
}  // namespace moefuse
