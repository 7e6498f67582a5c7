// The layer's numerics tier (LayerOptions::numerics, the config's `numerics` key, default_numerics()): which one a
// layer runs and reports; that the native tier is within docs/layer.md's tolerance of the oracle with the routing
// exact, and deterministic (the same bits for any thread count, batch, chunking or path) — on every machine; and
// that on a machine without the amx level native and portable give the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/errors.h"

namespace moefuse {
namespace {

using testing::tensors_equal;

LayerOptions tier(Numerics n, int threads = 2) {
  LayerOptions o = testing::with_threads(threads);
  o.numerics = n;
  return o;
}

// One layer per family (float, each dtype) and per quantised chain and weight format; "fp8" = FP8 weights held one
// byte (with_random_fp8_weights).
struct Case {
  MoeConfig config;
  bool fp8 = false;
  std::string name;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const char* p : testing::kPresetNames)
    for (DType d : {DType::bf16, DType::f16, DType::f32})
      out.push_back({testing::shrunk_preset(p, d), false, std::string(p) + "/" + std::string(dtype_name(d))});
  for (QuantMode q : {QuantMode::w8a8, QuantMode::w8a8c8, QuantMode::w4a16, QuantMode::w4a8}) {
    MoeConfig c = testing::shrunk_preset("deepseek-v2-lite", DType::bf16, q);
    c.quant_group_size = 32;
    out.push_back({c, false, "deepseek-v2-lite/bf16/" + std::string(quant_mode_name(q))});
  }
  out.push_back({testing::shrunk_preset("qwen3-30b-a3b", DType::bf16), true, "qwen3-30b-a3b/bf16/fp8"});
  return out;
}

MoeLayer make(const Case& k, const LayerOptions& o) {
  return k.fp8 ? MoeLayer::with_random_fp8_weights(k.config, 3, o) : MoeLayer::with_random_weights(k.config, 3, o);
}

// The largest ||got - want||_2 / ||want||_2 over the rows of two [T, H] tensors (docs/layer.md §2's measure).
double max_token_rel_l2(const Tensor& got, const Tensor& want) {
  const Tensor a = got.to(DType::f32).contiguous(), b = want.to(DType::f32).contiguous();
  double worst = 0;
  for (int64_t t = 0; t < a.size(0); ++t) {
    double diff = 0, norm = 0;
    for (int64_t h = 0; h < a.size(1); ++h) {
      const double x = a.data_as<const float>()[t * a.size(1) + h], y = b.data_as<const float>()[t * a.size(1) + h];
      diff += (x - y) * (x - y);
      norm += y * y;
    }
    worst = std::max(worst, norm > 0 ? std::sqrt(diff / norm) : diff > 0 ? INFINITY : 0.0);
  }
  return worst;
}

TEST(LayerNumerics, OptionsOverConfigOverTheDefault) {
  MoeConfig c = testing::tiny_config();
  // The suites run with MOEFUSE_NUMERICS=portable (tests/CMakeLists.txt).
  EXPECT_EQ(MoeLayer::with_random_weights(c, 1, testing::with_threads(1)).numerics(), default_numerics());
  for (Numerics n : {Numerics::native, Numerics::portable}) {
    EXPECT_EQ(MoeLayer::with_random_weights(c, 1, tier(n, 1)).numerics(), n);
    c.numerics = n;
    EXPECT_EQ(MoeLayer::with_random_weights(c, 1, testing::with_threads(1)).numerics(), n);
    const Numerics other = n == Numerics::native ? Numerics::portable : Numerics::native;
    EXPECT_EQ(MoeLayer::with_random_weights(c, 1, tier(other, 1)).numerics(), other);
    c.numerics.reset();
  }
}

// Runs everywhere, so that on a CPU with AMX-BF16 it checks the tier's own kernels.
TEST(LayerNumerics, NativeIsWithinTheToleranceOfTheOracleWithExactRouting) {
  for (const Case& k : cases()) {
    SCOPED_TRACE(k.name);
    MoeLayer layer = make(k, tier(Numerics::native));
    const Tensor x = testing::layer_tokens(k.config, 9, 11);
    for (bool prefill : {false, true}) {
      LayerRouting got, want;
      const Tensor y = layer.forward(x, prefill, &got);
      const Tensor ref = reference_layer_forward(k.config, layer.weights(), x, &want);
      EXPECT_LE(max_token_rel_l2(y, ref), 1.0 / 64) << "prefill " << prefill;
      EXPECT_TRUE(tensors_equal(want.topk_idx, got.topk_idx));
      EXPECT_TRUE(tensors_equal(want.topk_weight, got.topk_weight));
    }
  }
}

TEST(LayerNumerics, NativeGivesTheSameBitsForAnyThreadsBatchChunkingOrPath) {
  for (const char* preset : {"qwen3-30b-a3b", "deepseek-v3"}) {
    MoeConfig c = testing::shrunk_preset(preset, DType::bf16);
    const Tensor x = testing::layer_tokens(c, 300, 5);  // 300 tokens on 2 threads: the prefill split into shares
    const Tensor want = MoeLayer::with_random_weights(c, 2, tier(Numerics::native, 1)).forward(x, true);
    MoeLayer two = MoeLayer::with_random_weights(c, 2, tier(Numerics::native, 2));
    EXPECT_TRUE(tensors_equal(want, two.forward(x, true))) << preset;
    EXPECT_TRUE(tensors_equal(want, two.forward(x, false))) << preset;  // decode: the fused path
    EXPECT_TRUE(tensors_equal(want.narrow(0, 17, 5), two.forward(x.narrow(0, 17, 5), false))) << preset;
    c.moe_chunk_max_len = 64;
    c.enable_superkernel = false;
    EXPECT_TRUE(tensors_equal(want, MoeLayer::with_random_weights(c, 2, tier(Numerics::native, 3)).forward(x)))
        << preset;
  }
}

TEST(LayerNumerics, NativeIsPortableWithoutTheAmxLevel) {
  if (active_isa() >= Isa::amx && native_amx_bf16())
    GTEST_SKIP() << "the amx level is in use with MOEFUSE_AMX_BF16=on: native runs bf16 weights on AMX-BF16, whose "
                    "bits portable does not give (NativeIsWithinTheToleranceOfTheOracleWithExactRouting checks it)";
  std::printf("native runs the portable kernels: %s\n",
              active_isa() >= Isa::amx ? "AMX-BF16 not asked for (MOEFUSE_AMX_BF16)"
              : *amx_unused_reason()   ? amx_unused_reason()
                                       : "amx level capped by MOEFUSE_MAX_ISA or set_max_isa");
  for (const Case& k : cases()) {
    SCOPED_TRACE(k.name);
    MoeLayer native = make(k, tier(Numerics::native)), portable = make(k, tier(Numerics::portable));
    EXPECT_EQ(native.numerics(), Numerics::native);
    const Tensor x = testing::layer_tokens(k.config, 9, 13);
    for (bool prefill : {false, true}) {
      EXPECT_TRUE(tensors_equal(portable.forward(x, prefill), native.forward(x, prefill))) << "prefill " << prefill;
      EXPECT_EQ(native.kernel(), portable.kernel());
    }
  }
}

// Runs again under MOEFUSE_NUMERICS=native, empty and bad (tests/CMakeLists.txt: numerics_env.*).
TEST(NumericsDefault, LayersTakeItUnlessToldOtherwise) {
  const char* env = std::getenv("MOEFUSE_NUMERICS");
  const std::string v = env ? env : "";
  MoeConfig c = testing::tiny_config();
  if (v.empty() || v == "native" || v == "portable") {
    EXPECT_EQ(MoeLayer::with_random_weights(c, 1, testing::with_threads(1)).numerics(), default_numerics());
  } else {
    EXPECT_THROWS_MSG(MoeLayer::with_random_weights(c, 1, testing::with_threads(1)), ValueError,
                      "MOEFUSE_NUMERICS: expected native or portable", v);
  }
  // A tier given by the options or the config never reads the variable.
  EXPECT_EQ(MoeLayer::with_random_weights(c, 1, tier(Numerics::portable, 1)).numerics(), Numerics::portable);
  c.numerics = Numerics::native;
  EXPECT_EQ(MoeLayer::with_random_weights(c, 1, testing::with_threads(1)).numerics(), Numerics::native);
}

}  // namespace
}  // namespace moefuse
