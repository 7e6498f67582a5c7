// The expert-parallel layer under mpirun (tests/CMakeLists.txt runs this binary with 2 and 3 ranks): bitwise
// against the single-process layer for every family, dtype and chain, with uneven token splits (one rank with
// none), several rounds, placements with replicated experts, P not dividing E and P > E, checkpoints holding only a
// rank's experts, and the errors every rank must see.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "ep/dispatch_plan.h"
#include "ep/mpi_test_env.h"
#include "moefuse/config.h"
#include "moefuse/ep.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "layer/fp8_weights.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/fp8_checkpoint.h"
#include "util/random.h"
#include "util/configs.h"

namespace moefuse {
namespace {

using testing::Rng;
using testing::mpi_rank;
using testing::mpi_size;

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A preset at test size (H 64, I 32; a shared expert of width 64).
MoeConfig tiny(const std::string& preset, DType dtype, QuantMode quant = QuantMode::none) {
  MoeConfig c = testing::shrunk_preset(preset, dtype, quant, 64, 32, 64);
  if (int4_weights(quant)) c.quant_group_size = 32;
  validate(c, "ep test config");
  return c;
}

// This rank's tokens: rank r gets counts[r % counts.size()] of them, from a seed of its own.
Tensor rank_tokens(const MoeConfig& c, std::initializer_list<int64_t> counts, uint64_t seed) {
  const int64_t T = *(counts.begin() + mpi_rank() % int(counts.size()));
  return Rng(seed * 131 + uint64_t(mpi_rank())).normal_tensor(c.dtype, {T, c.hidden_size}, 1.0f);
}

EpOptions options(ExpertPlacement placement = {}) {
  EpOptions o;
  o.layer.threads = 1;
  o.placement = std::move(placement);
  o.timeout_seconds = 60;
  return o;
}

// Rows per expert of `routing` summed over every rank: what expert_tokens() must report.
std::vector<int64_t> global_expert_rows(const LayerRouting& routing, int64_t experts) {
  std::vector<int64_t> mine(size_t(experts), 0), all(size_t(experts), 0);
  const int32_t* idx = routing.topk_idx.data_as<const int32_t>();
  for (int64_t i = 0; i < routing.topk_idx.numel(); ++i) ++mine[size_t(idx[i])];
  MPI_Allreduce(mine.data(), all.data(), int(experts), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  return all;
}

// The EP layer against the single-process one on this rank's tokens, decode and prefill, routing and counts too;
// its experts take the single-process layer's path (the fused path's expert tasks for a decode step it fuses).
void expect_same_as_single(ExpertParallelLayer& ep, const MoeLayer& single_const, const Tensor& x) {
  MoeLayer& single = const_cast<MoeLayer&>(single_const);
  for (bool prefill : {false, true}) {
    LayerRouting want_routing, got_routing;
    const Tensor want = single.forward(x, prefill, &want_routing);
    const Tensor got = ep.forward(x, prefill, &got_routing);
    EXPECT_TENSOR_EQ(want, got) << "rank " << mpi_rank() << " prefill " << prefill;
    if (x.size(0) > 0) {
      EXPECT_EQ(ep.path(), single.path()) << "prefill " << prefill;
    }
    EXPECT_TENSOR_EQ(want_routing.topk_idx, got_routing.topk_idx);
    EXPECT_TENSOR_EQ(want_routing.topk_weight, got_routing.topk_weight);
    EXPECT_EQ(ep.expert_tokens(), global_expert_rows(want_routing, ep.config().num_experts));
  }
}

struct Case {
  std::string preset;
  DType dtype;
  QuantMode quant;
};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const char* p : {"olmoe-1b-7b", "qwen3-30b-a3b", "qwen1.5-moe-a2.7b", "deepseek-v2-lite", "deepseek-v3",
                        "mixtral-8x7b"}) {
    for (DType d : {DType::f32, DType::bf16, DType::f16}) cases.push_back({p, d, QuantMode::none});
    cases.push_back({p, DType::bf16, QuantMode::w8a8});
    cases.push_back({p, DType::f16, QuantMode::w8a8});
    cases.push_back({p, DType::bf16, QuantMode::w8a8c8});
    cases.push_back({p, DType::bf16, QuantMode::w4a16});
    cases.push_back({p, DType::bf16, QuantMode::w4a8});
  }
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.preset + "_" + std::string(dtype_name(info.param.dtype)) + "_" +
                  std::string(quant_mode_name(info.param.quant));
  std::replace_if(n.begin(), n.end(), [](char ch) { return !std::isalnum(static_cast<unsigned char>(ch)); }, '_');
  return n;
}

class EpFamilies : public ::testing::TestWithParam<Case> {};

// Every family, dtype and chain, contiguous placement, uneven tokens (the second rank has none), both paths (the
// presets ask for the fused path: decode runs it, for every chain; prefill runs the chain).
TEST_P(EpFamilies, EqualsTheSingleProcessLayerBitwise) {
  const Case& k = GetParam();
  const MoeConfig c = tiny(k.preset, k.dtype, k.quant);
  ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 3, MPI_COMM_WORLD, options());
  const MoeLayer single = MoeLayer::with_random_weights(c, 3, {.threads = 1});
  const Tensor x = rank_tokens(c, {9, 0, 23}, 5);
  expect_same_as_single(ep, single, x);
  ep.forward(x, /*is_prefill=*/false);
  ASSERT_TRUE(c.enable_superkernel);
  EXPECT_EQ(ep.path(), "superkernel");
  const int64_t held = int64_t(ep.local_experts().size());
  EXPECT_EQ(held, ExpertPlacement::contiguous(c.num_experts, mpi_size()).experts_of(mpi_rank()).size());
}

INSTANTIATE_TEST_SUITE_P(All, EpFamilies, ::testing::ValuesIn(all_cases()), case_name);

// The experts' path follows the single-process layer's: the chain for decode without enable_superkernel, and when
// the fused path declines the config (I not a multiple of 32), with the reason; the bits are the same.
TEST(Ep, DecodeTakesTheSingleProcessLayersPath) {
  for (const char* variant : {"superkernel off", "I = 48"}) {
    MoeConfig c = tiny("qwen1.5-moe-a2.7b", DType::bf16, QuantMode::w8a8);
    if (variant[0] == 's') c.enable_superkernel = false;
    else c.moe_intermediate_size = 48;
    ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 14, MPI_COMM_WORLD, options());
    MoeLayer single = MoeLayer::with_random_weights(c, 14, {.threads = 1});
    expect_same_as_single(ep, single, rank_tokens(c, {5, 3, 0}, 7));
    ep.forward(rank_tokens(c, {5, 3, 0}, 7), /*is_prefill=*/false);
    EXPECT_EQ(ep.path(), variant[0] == 's' ? "chain" : "chain: I=48 is not a multiple of 32") << variant;
  }
}

// Several rounds of moe_chunk_max_len tokens, a different number on each rank, and cumulative counts.
TEST(Ep, RoundsOfChunksWithRanksOfDifferentLengths) {
  MoeConfig c = tiny("deepseek-v3", DType::bf16, QuantMode::w8a8);
  c.moe_chunk_max_len = 4;
  ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 4, MPI_COMM_WORLD, options());
  MoeLayer single = MoeLayer::with_random_weights(c, 4, {.threads = 1});
  const Tensor x = rank_tokens(c, {3, 13, 8}, 6);
  expect_same_as_single(ep, single, x);
  EXPECT_EQ(ep.last_timings().rounds, 4);  // ceil(13 / 4) on every rank
  std::vector<int64_t> twice = ep.expert_tokens();
  for (int64_t& v : twice) v *= 2;
  EXPECT_EQ(ep.cumulative_expert_tokens(), twice);  // expect_same_as_single ran two forwards
  int64_t sum = 0;
  for (int64_t v : ep.expert_tokens()) sum += v;
  EXPECT_EQ(sum, (3 + 13 + (mpi_size() > 2 ? 8 : 0)) * c.num_experts_per_tok);
}

// Every rank without tokens: a forward of nothing everywhere; and one token in all (experts with zero rows).
TEST(Ep, NoTokensAnywhereAndOneTokenInAll) {
  const MoeConfig c = tiny("qwen1.5-moe-a2.7b", DType::bf16);
  ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 8, MPI_COMM_WORLD, options());
  MoeLayer single = MoeLayer::with_random_weights(c, 8, {.threads = 1});
  const Tensor none = Tensor::empty(c.dtype, {0, c.hidden_size});
  EXPECT_EQ(ep.forward(none).size(0), 0);
  EXPECT_EQ(ep.last_timings().rounds, 0);
  const Tensor one = mpi_rank() == 0 ? rank_tokens(c, {1}, 2) : none;
  expect_same_as_single(ep, single, one);
  const std::vector<int64_t>& n = ep.expert_tokens();
  EXPECT_EQ(std::count(n.begin(), n.end(), 0), c.num_experts - c.num_experts_per_tok);
}

// P not dividing E (5 experts), and P > E (2 experts on 3 ranks: a rank holds none and still routes its tokens).
TEST(Ep, ExpertCountsThatDoNotSplitEvenly) {
  for (int64_t E : {5, 2, 1}) {
    MoeConfig c = tiny("olmoe-1b-7b", DType::f16);
    c.num_experts = E;
    c.num_experts_per_tok = std::min<int64_t>(2, E);
    ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 9, MPI_COMM_WORLD, options());
    MoeLayer single = MoeLayer::with_random_weights(c, 9, {.threads = 1});
    expect_same_as_single(ep, single, rank_tokens(c, {7, 4, 11}, 3));
    if (E < mpi_size() && mpi_rank() == mpi_size() - 1) {
      EXPECT_TRUE(ep.local_experts().empty()) << E;
    }
  }
}

// A placement map: a hot expert on every rank (its rows split between the replicas), the others scattered out of
// order; the output does not change.
TEST(Ep, PlacementWithReplicatedExperts) {
  const MoeConfig c = tiny("qwen3-30b-a3b", DType::bf16, QuantMode::w8a8c8);
  ExpertPlacement p;
  for (int64_t e = 0; e < c.num_experts; ++e) p.ranks.push_back({int((e * 7) % mpi_size())});
  for (int r = 1; r < mpi_size(); ++r) p.ranks[0].push_back(r);  // expert 0 everywhere
  p.ranks[5] = {mpi_size() - 1, 0};
  ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 10, MPI_COMM_WORLD, options(p));
  MoeLayer single = MoeLayer::with_random_weights(c, 10, {.threads = 2});
  expect_same_as_single(ep, single, rank_tokens(c, {40, 17, 0}, 4));
}

// From checkpoints: one whole checkpoint with smooth scales, then one per rank holding only that rank's experts
// (and what every rank reads) — so a rank reads nothing of the others' experts.
TEST(Ep, FromCheckpointsReadingOnlyEachRanksExperts) {
  for (QuantMode q : {QuantMode::none, QuantMode::w8a8, QuantMode::w8a8c8}) {
    const MoeConfig c = tiny("deepseek-v2-lite", DType::bf16, q);
    LayerWeights w = MoeLayer::with_random_weights(c, 11, {.threads = 1}).weights();
    if (q != QuantMode::none) {
      Rng rng(12);
      w.smooth_scale1 = rng.uniform_tensor(DType::f32, {c.num_experts, c.hidden_size}, 0.5f, 2.0f);
      if (q == QuantMode::w8a8)
        w.smooth_scale2 = rng.uniform_tensor(DType::f32, {c.num_experts, c.moe_intermediate_size}, 0.5f, 2.0f);
    }
    const std::string dir = testing::shared_temp_dir("ep_ckpt");
    const NamedTensors all = layer_checkpoint_tensors(c, w, 2);
    const ExpertPlacement p = ExpertPlacement::contiguous(c.num_experts, mpi_size());
    const std::vector<int64_t> mine = p.experts_of(mpi_rank());
    NamedTensors share;
    for (const auto& [name, t] : all) {
      const size_t at = name.find(".experts.");
      if (at == std::string::npos) {
        share.emplace_back(name, t);
        continue;
      }
      const int64_t e = std::stoll(name.substr(at + 9));
      const bool smooth1 = name.find("smooth_scale") != std::string::npos &&
                           name.find(c.model_type == ModelType::mixtral ? ".w1." : ".gate_proj.") != std::string::npos;
      if (smooth1 || std::find(mine.begin(), mine.end(), e) != mine.end()) share.emplace_back(name, t);
    }
    if (mpi_rank() == 0) write_safetensors(dir + "/all.safetensors", all);
    write_safetensors(dir + "/rank" + std::to_string(mpi_rank()) + ".safetensors", share);
    MPI_Barrier(MPI_COMM_WORLD);
    MoeLayer single(c, w, {.threads = 1});
    const Tensor x = rank_tokens(c, {6, 9, 1}, 13);
    {
      ExpertParallelLayer ep = ExpertParallelLayer::from_checkpoint(c, Checkpoint(dir + "/all.safetensors"), 2,
                                                                    MPI_COMM_WORLD, options());
      expect_same_as_single(ep, single, x);
    }
    ExpertParallelLayer ep = ExpertParallelLayer::from_checkpoint(
        c, Checkpoint(dir + "/rank" + std::to_string(mpi_rank()) + ".safetensors"), 2, MPI_COMM_WORLD, options());
    expect_same_as_single(ep, single, x);
    // A single-process layer cannot load a rank's share: its other experts are not there.
    EXPECT_THROW(MoeLayer::from_checkpoint(c, Checkpoint(dir + "/rank" + std::to_string(mpi_rank()) +
                                                         ".safetensors"), 2, {.threads = 1}),
                 IoError);
    MPI_Barrier(MPI_COMM_WORLD);
    if (mpi_rank() == 0) std::filesystem::remove_all(dir);
  }
}

// A GPTQ checkpoint in act order (each expert's and the shared expert's w13 in an input order of their own, written
// by the layer's writer as permuted g_idx): each rank reads its experts' orders and gathers the rows it receives,
// decode and prefill, bitwise the single-process layer.
TEST(Ep, GptqCheckpointInActOrder) {
  for (QuantMode q : {QuantMode::w4a16, QuantMode::w4a8}) {
    const MoeConfig c = tiny("deepseek-v2-lite", DType::bf16, q);
    LayerWeights w = MoeLayer::with_random_weights(c, 31, {.threads = 1}).weights();
    const int64_t H = c.hidden_size, G = c.quant_group_size;
    Rng rng(32);
    auto orders = [&](int64_t n) {  // per row: channels shuffled, then sorted within each group of G
      Tensor t = Tensor::empty(DType::i32, {n, H});
      for (int64_t e = 0; e < n; ++e) {
        int32_t* row = t.data_as<int32_t>() + e * H;
        for (int64_t j = 0; j < H; ++j) row[j] = int32_t(j);
        for (int64_t j = H - 1; j > 0; --j) std::swap(row[j], row[rng.integer(0, j)]);
        for (int64_t g = 0; g < H / G; ++g) std::sort(row + g * G, row + (g + 1) * G);
      }
      return t;
    };
    w.w13_perm = orders(c.num_experts);
    w.shared_w13_perm = orders(1);
    const std::string dir = testing::shared_temp_dir("ep_act_order");
    if (mpi_rank() == 0) write_safetensors(dir + "/model.safetensors", layer_checkpoint_tensors(c, w, 2));
    MPI_Barrier(MPI_COMM_WORLD);
    {
      const Checkpoint ck(dir + "/model.safetensors");
      MoeLayer single = MoeLayer::from_checkpoint(c, ck, 2, {.threads = 1});
      EXPECT_TRUE(single.weights().w13_perm.defined());
      ExpertParallelLayer ep = ExpertParallelLayer::from_checkpoint(c, ck, 2, MPI_COMM_WORLD, options());
      expect_same_as_single(ep, single, rank_tokens(c, {6, 9, 1}, 33));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (mpi_rank() == 0) std::filesystem::remove_all(dir);
  }
}

// An FP8 block-scaled checkpoint (blocks [128, 128], every expert projection e4m3): each rank holds its share one
// byte per weight, as the single-process layer does, and the output is that layer's, bitwise.
TEST(Ep, Fp8CheckpointHeldOneByte) {
  const MoeConfig c = tiny("deepseek-v3", DType::bf16);
  const LayerWeights w = MoeLayer::with_random_weights(c, 21, {.threads = 1}).weights();
  const std::string dir = testing::shared_temp_dir("ep_fp8");
  if (mpi_rank() == 0) {
    std::vector<testing::RawTensor> raw;
    for (const auto& [name, t] : layer_checkpoint_tensors(c, w, 2)) {
      if (name.find("experts.") == std::string::npos) {
        raw.push_back(testing::raw_tensor(name, t));
        continue;
      }
      // Every projection here has at most 128 rows: one block of rows, whose scales are row 0's.
      const int64_t n = t.size(0), k = t.size(1), kb = (k + 127) / 128;
      ASSERT_LE(n, 128);
      testing::RawTensor q{name, "F8_E4M3", {n, k}, std::vector<std::byte>(size_t(n * k))};
      std::vector<float> scales(size_t(n * kb));
      const Tensor tc = t.contiguous();
      layer::quantise_fp8_blocks(tc.data(), tc.dtype(), n, k, reinterpret_cast<uint8_t*>(q.bytes.data()), scales.data());
      Tensor s = Tensor::empty(DType::f32, {1, kb});
      std::copy(scales.begin(), scales.begin() + kb, s.data_as<float>());
      raw.push_back(std::move(q));
      raw.push_back(testing::raw_tensor(name + "_scale_inv", s));
    }
    testing::write_raw_safetensors(dir + "/model.safetensors", raw);
    write_text(dir + "/config.json", R"({"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", )"
                                     R"("weight_block_size": [128, 128], "activation_scheme": "dynamic"}})");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  {
    const Checkpoint ck(dir + "/model.safetensors");
    MoeLayer single = MoeLayer::from_checkpoint(c, ck, 2, {.threads = 1});
    const Tensor x = rank_tokens(c, {5, 8, 1}, 23);
    single.forward(x);
    EXPECT_NE(single.kernel().find("fp8"), std::string::npos) << single.kernel();
    ExpertParallelLayer ep = ExpertParallelLayer::from_checkpoint(c, ck, 2, MPI_COMM_WORLD, options());
    expect_same_as_single(ep, single, x);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (mpi_rank() == 0) std::filesystem::remove_all(dir);
}

// Ranks whose configs disagree: every rank gets the error (none waits for the others), naming what differs.
TEST(EpErrors, RanksWithDifferentConfigsAllFail) {
  MoeConfig c = tiny("olmoe-1b-7b", DType::bf16);
  if (mpi_rank() == mpi_size() - 1) c.routed_scaling_factor = 2.0;
  EXPECT_THROWS_MSG(ExpertParallelLayer::with_random_weights(c, 1, MPI_COMM_WORLD, options()), ValueError,
                   "config: expected every rank to agree on the config, layer index and placement");
}

// Ranks whose weights disagree (different checkpoints: here different seeds): every rank fails after loading.
TEST(EpErrors, RanksWithDifferentWeightsAllFail) {
  const MoeConfig c = tiny("olmoe-1b-7b", DType::bf16);
  EXPECT_THROWS_MSG(
      ExpertParallelLayer::with_random_weights(c, mpi_rank() == 0 ? 1 : 2, MPI_COMM_WORLD, options()), ValueError,
      "weights: expected every rank to agree on the router");
}

// A rank whose checkpoint is missing: that rank gets the IoError naming the tensor, every other rank a ValueError
// naming it.
TEST(EpErrors, ARankThatCannotLoadFailsEveryRank) {
  const MoeConfig c = tiny("olmoe-1b-7b", DType::bf16);
  const std::string dir = testing::shared_temp_dir("ep_missing");
  const NamedTensors all = layer_checkpoint_tensors(c, MoeLayer::with_random_weights(c, 1).weights(), 0);
  NamedTensors without_router;
  for (const auto& [name, t] : all)
    if (name.find("gate.weight") == std::string::npos || name.find("experts") != std::string::npos)
      without_router.emplace_back(name, t);
  const std::string mine = dir + "/r" + std::to_string(mpi_rank()) + ".safetensors";
  write_safetensors(mine, mpi_rank() == 1 ? without_router : all);
  MPI_Barrier(MPI_COMM_WORLD);
  if (mpi_rank() == 1)
    EXPECT_THROWS_MSG(ExpertParallelLayer::from_checkpoint(c, Checkpoint(mine), 0, MPI_COMM_WORLD, options()),
                     IoError, "model.layers.0.mlp.gate.weight");
  else
    EXPECT_THROWS_MSG(ExpertParallelLayer::from_checkpoint(c, Checkpoint(mine), 0, MPI_COMM_WORLD, options()),
                     ValueError, "weights: expected every rank to succeed, got rank(s) 1 failing");
  MPI_Barrier(MPI_COMM_WORLD);
  if (mpi_rank() == 0) std::filesystem::remove_all(dir);
}

// Bad placements and a bad input on one rank: every rank fails, the communicator stays usable.
TEST(EpErrors, BadPlacementAndBadInput) {
  const MoeConfig c = tiny("olmoe-1b-7b", DType::bf16);
  ExpertPlacement p = ExpertPlacement::contiguous(c.num_experts, mpi_size());
  p.ranks[3] = {mpi_size()};
  EXPECT_THROWS_MSG(ExpertParallelLayer::with_random_weights(c, 1, MPI_COMM_WORLD, options(p)), ValueError,
                   "placement: ranks[3]: expected ranks in 0..");
  p.ranks[3] = {};
  EXPECT_THROWS_MSG(ExpertParallelLayer::with_random_weights(c, 1, MPI_COMM_WORLD, options(p)), ValueError,
                   "ranks[3]: expected at least one rank");
  ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 1, MPI_COMM_WORLD, options());
  const Tensor x = mpi_rank() == 0 ? Tensor::empty(DType::f32, {2, c.hidden_size}) : rank_tokens(c, {3}, 1);
  if (mpi_rank() == 0)
    EXPECT_THROWS_MSG(ep.forward(x), TypeError, "x");
  else
    EXPECT_THROWS_MSG(ep.forward(x), ValueError, "got rank(s) 0 refusing theirs");
  MoeLayer single = MoeLayer::with_random_weights(c, 1, {.threads = 1});
  expect_same_as_single(ep, single, rank_tokens(c, {3}, 1));  // still usable
}

// The bookkeeping alone: a home rank's rows go out grouped by rank then expert, a replicated expert's rows in
// contiguous parts rotated by the home rank, and a holder lays out what it receives by (expert, source).
TEST(EpPlan, SendAndReceiveOrders) {
  ExpertPlacement p;
  p.ranks = {{1}, {0, 1}, {0}};  // expert 1 on both ranks
  const std::vector<int64_t> counts{2, 5, 1};  // expanded rows 0-1: expert 0, 2-6: expert 1, 7: expert 2
  const ep::SendPlan home0 = ep::plan_send(p, 0, 2, counts);
  // Expert 1's 5 rows: part 0 (3 rows, 2-4) to replica (0 + 0) % 2 = rank 0, part 1 (rows 5-6) to rank 1.
  EXPECT_EQ(home0.rows, (std::vector<int>{4, 4}));
  EXPECT_EQ(home0.displ, (std::vector<int>{0, 4}));
  EXPECT_EQ(home0.row_of, (std::vector<int32_t>{2, 3, 4, 7, 0, 1, 5, 6}));
  EXPECT_EQ(home0.count, (std::vector<int64_t>{0, 3, 1, 2, 2, 0}));
  const ep::SendPlan home1 = ep::plan_send(p, 1, 2, counts);  // rotated: part 0 to rank 1
  EXPECT_EQ(home1.row_of, (std::vector<int32_t>{5, 6, 7, 0, 1, 2, 3, 4}));
  // Rank 1 holds experts 0 and 1 and receives home0's and home1's rows for them.
  std::vector<int64_t> to_rank1(home0.count.begin() + 3, home0.count.end());
  to_rank1.insert(to_rank1.end(), home1.count.begin() + 3, home1.count.end());
  const ep::ReceivePlan r = ep::plan_receive(to_rank1, p.experts_of(1), 2, 3);
  EXPECT_EQ(r.rows, (std::vector<int>{4, 5}));
  EXPECT_EQ(r.group_rows, (std::vector<int64_t>{4, 5}));  // expert 0: 2 + 2 rows, expert 1: 2 + 3
  // Expert 0's rows from rank 0 (records 0-1) then rank 1 (4-5); expert 1's from rank 0 (2-3) then rank 1 (6-8).
  EXPECT_EQ(r.record_of, (std::vector<int32_t>{0, 1, 4, 5, 2, 3, 6, 7, 8}));
}

TEST(EpPlacement, ContiguousAndFromFile) {
  const ExpertPlacement p = ExpertPlacement::contiguous(5, 3);
  EXPECT_EQ(p.experts_of(0), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(p.experts_of(1), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(p.experts_of(2), (std::vector<int64_t>{4}));
  EXPECT_TRUE(ExpertPlacement::contiguous(2, 3).experts_of(2).empty());
  const std::string path = "/tmp/moefuse_ep_placement_" + std::to_string(getpid()) + ".json";
  write_text(path, R"({"experts": [[0], [1, 0], [1]]})");
  const ExpertPlacement f = ExpertPlacement::from_file(path, 3, 2);
  EXPECT_EQ(f.ranks, (std::vector<std::vector<int>>{{0}, {1, 0}, {1}}));
  EXPECT_THROWS_MSG(ExpertPlacement::from_file(path, 4, 2), ValueError, "expected a list of ranks for each of the 4");
  EXPECT_THROWS_MSG(ExpertPlacement::from_file(path, 3, 1), ValueError, path + ": experts[1]: expected ranks in 0..0");
  write_text(path, R"({"experts": [[0], [1, 1]]})");
  EXPECT_THROWS_MSG(ExpertPlacement::from_file(path, 2, 2), ValueError, "ranks[1]: expected distinct ranks");
  write_text(path, R"({"experts": [[0], "x"]})");
  EXPECT_THROWS_MSG(ExpertPlacement::from_file(path, 2, 2), ValueError, "experts[1]: expected a list of ranks");
  write_text(path, "[");
  EXPECT_THROWS_MSG(ExpertPlacement::from_file(path, 2, 2), ValueError, "parse error");
  std::filesystem::remove(path);
  EXPECT_THROWS_MSG(ExpertPlacement::from_file(path, 2, 2), IoError, path);
}

}  // namespace
}  // namespace moefuse

namespace moefuse {
namespace {

// A rank that leaves (finalises MPI and exits) while the others run a forward: they fail with an IoError naming the
// exchange within the timeout instead of hanging. Run on its own (tests/CMakeLists.txt): the world communicator is
// not usable after it, so every rank ends the process here.
TEST(EpEarlyExit, TheOtherRanksFailWithinTheTimeout) {
  const MoeConfig c = tiny("olmoe-1b-7b", DType::bf16);
  EpOptions o = options();
  o.timeout_seconds = 3;
  ExpertParallelLayer ep = ExpertParallelLayer::with_random_weights(c, 1, MPI_COMM_WORLD, o);
  const Tensor x = rank_tokens(c, {4}, 1);
  EXPECT_EQ(ep.forward(x).size(0), 4);
  if (mpi_rank() == mpi_size() - 1) {
    MPI_Finalize();  // leaves the job cleanly, without a word to the others about the layer
    std::fflush(stdout);
    std::_Exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROWS_MSG(ep.forward(x), IoError, "ExpertParallelLayer: forward (start): expected every one of the",
                    "within 3", "got no answer on rank");
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 3.0);
  EXPECT_THROWS_MSG(ep.forward(x), IoError, "got no answer");  // and again: no hang on a later call either
  std::printf("rank %d: failed as expected after %.1f s: %s\n", mpi_rank(), waited,
              ::testing::Test::HasFailure() ? "FAILED" : "PASSED");
  std::fflush(stdout);
  MPI_Finalize();
  std::_Exit(::testing::Test::HasFailure() ? 1 : 0);
}

}  // namespace
}  // namespace moefuse
