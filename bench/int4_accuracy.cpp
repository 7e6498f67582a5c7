// int4_accuracy: how close the w4a16 layer stays to the float layer on the same weights, per preset, group size and
// rounding (the numbers of docs/layer.md §5, "int4 weights"). Not a timing: for each preset it builds the bf16 layer
// and its w4a16 form from the same random weights (seed 1; the w4a16 weights are those rounded to int4), runs the
// same tokens through both and prints the per-token cosine similarity of the outputs (mean and minimum over tokens).
// The preset's H, I, K, scoring and shared expert are kept; E is capped (--experts, default 16; deepseek-v3's
// groups shrink with it) so that every preset fits in memory: each token's output is a weighted sum of K expert
// MLPs, whose int4 error does not depend on E. A second table does the same for one expert MLP of each preset's
// H and I on Gaussian weights (N(0, 1/fan_in), bf16, written to a temporary checkpoint and quantised on load),
// whose tails make int4's error larger than the uniform random weights'. --mode w4a8 measures the w4a8 layer (the
// same int4 weights, int8 per-token activations) instead.
//
//   int4_accuracy [--tokens 64] [--experts 16] [--threads 0] [--mode w4a16|w4a8] [--gaussian-only]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>

#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"

using namespace moefuse;

namespace {

QuantMode g_mode = QuantMode::w4a16;  // --mode

// `f` with int4 weights: groups of G input channels, symmetric or with zero points; validated.
MoeConfig int4_variant(const MoeConfig& f, int64_t G, bool symmetric, const std::string& name) {
  MoeConfig q = f;
  q.quant_mode = g_mode;
  q.quant_group_size = G;
  q.quant_symmetric = symmetric;
  validate(q, name);
  return q;
}

struct Cosine {
  double mean = 0, min = 1;
};

Cosine token_cosine(const Tensor& a, const Tensor& b) {
  const Tensor fa = a.to(DType::f32).contiguous(), fb = b.to(DType::f32).contiguous();
  const int64_t T = a.size(0), H = a.size(1);
  Cosine c;
  for (int64_t t = 0; t < T; ++t) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t h = 0; h < H; ++h) {
      const double u = fa.data_as<float>()[t * H + h], v = fb.data_as<float>()[t * H + h];
      ab += u * v;
      aa += u * u;
      bb += v * v;
    }
    const double cos = ab / std::sqrt(aa * bb);
    c.mean += cos / double(T);
    c.min = std::min(c.min, cos);
  }
  return c;
}

Tensor gaussian(std::mt19937_64& gen, int64_t rows, int64_t cols) {
  std::normal_distribution<float> n(0.0f, 1.0f / std::sqrt(float(cols)));
  Tensor t = Tensor::empty(DType::bf16, {rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i) t.data_as<bfloat16>()[i] = to_bf16(n(gen));
  return t;
}

// One expert (E = K = 1: the output is that expert's MLP) of H x I on Gaussian weights.
void gaussian_table(int64_t tokens, int threads) {
  std::printf("\n| one expert MLP, Gaussian weights | H | I | G = 128 sym | G = 128 asym | G = 32 sym | G = 32 asym |\n"
              "|---|---|---|---|---|---|---|\n");
  const std::string file =
      (std::filesystem::temp_directory_path() / ("int4_accuracy_" + std::to_string(getpid()) + ".safetensors")).string();
  for (const std::string& name : preset_names()) {
    const MoeConfig p = load_preset(name);
    MoeConfig f;  // olmoe naming, one expert, no shared expert
    f.num_experts = 1;
    f.num_experts_per_tok = 1;
    f.hidden_size = p.hidden_size;
    f.moe_intermediate_size = p.moe_intermediate_size;
    validate(f, name);
    std::mt19937_64 gen(7);
    const int64_t H = f.hidden_size, I = f.moe_intermediate_size;
    const std::string e = "model.layers.0.mlp.experts.0.";
    write_safetensors(file, {{"model.layers.0.mlp.gate.weight", gaussian(gen, 1, H)},
                             {e + "gate_proj.weight", gaussian(gen, I, H)},
                             {e + "up_proj.weight", gaussian(gen, I, H)},
                             {e + "down_proj.weight", gaussian(gen, H, I)}});
    const Checkpoint ck(file);
    const Tensor x = random_tokens(tokens, H, 2, f.dtype);
    const Tensor want = MoeLayer::from_checkpoint(f, ck, 0, {.threads = threads}).forward(x, true);
    std::printf("| %s | %lld | %lld |", name.c_str(), static_cast<long long>(H), static_cast<long long>(I));
    for (int64_t G : {128, 32})
      for (bool sym : {true, false}) {
        const MoeConfig q = int4_variant(f, G, sym, name);
        const Cosine c = token_cosine(MoeLayer::from_checkpoint(q, ck, 0, {.threads = threads}).forward(x, true), want);
        std::printf(" %.4f (min %.4f) |", c.mean, c.min);
        std::fflush(stdout);
      }
    std::printf("\n");
  }
  std::filesystem::remove(file);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t tokens = 64, experts = 16;
  int threads = 0;
  bool gaussian_only = false;
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--gaussian-only")) {
      gaussian_only = true;
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--experts")) experts = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--mode") && !std::strcmp(argv[i + 1], "w4a8")) g_mode = QuantMode::w4a8;
    else if (!std::strcmp(argv[i], "--mode") && !std::strcmp(argv[i + 1], "w4a16")) g_mode = QuantMode::w4a16;
    else {
      std::fprintf(stderr, "usage: int4_accuracy [--tokens N] [--experts E] [--threads N] [--mode w4a16|w4a8] "
                           "[--gaussian-only]\n");
      return 2;
    }
  }
  if (gaussian_only) {
    gaussian_table(tokens, threads);
    return 0;
  }
  std::printf("| preset | H | I | G = 128 sym | G = 128 asym | G = 32 sym | G = 32 asym |\n|---|---|---|---|---|---|---|\n");
  for (const std::string& name : preset_names()) {
    MoeConfig f = load_preset(name);
    if (f.num_experts > experts) {
      f.n_group = std::min(f.n_group, experts / 4 > 0 ? experts / 4 : 1);
      f.topk_group = std::min(f.topk_group, f.n_group);
      f.num_experts = experts;
      f.num_experts_per_tok = std::min(f.num_experts_per_tok, f.topk_group * experts / f.n_group);
    }
    f.quant_mode = QuantMode::none;
    validate(f, name);
    MoeLayer ref = MoeLayer::with_random_weights(f, 1, {.threads = threads});
    const Tensor x = random_tokens(tokens, f.hidden_size, 2, f.dtype);
    const Tensor want = ref.forward(x, true);
    std::printf("| %s | %lld | %lld |", name.c_str(), static_cast<long long>(f.hidden_size),
                static_cast<long long>(f.moe_intermediate_size));
    for (int64_t G : {128, 32})
      for (bool sym : {true, false}) {
        const MoeConfig q = int4_variant(f, G, sym, name);
        MoeLayer l = MoeLayer::with_random_weights(q, 1, {.threads = threads});
        const Cosine c = token_cosine(l.forward(x, true), want);
        std::printf(" %.4f (min %.4f) |", c.mean, c.min);
        std::fflush(stdout);
      }
    std::printf("\n");
  }
  gaussian_table(tokens, threads);
  return 0;
}
