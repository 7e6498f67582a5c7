// int4_accuracy: how close the w4a16 layer stays to the float layer on the same weights, per preset, group size and
// rounding (the numbers of docs/layer.md §5, "int4 weights"). Not a timing: for each preset it builds the bf16 layer
// and its w4a16 form from the same random weights (seed 1; the w4a16 weights are those rounded to int4), runs the
// same tokens through both and prints the per-token cosine similarity of the outputs (mean and minimum over tokens).
// The preset's H, I, K, scoring and shared expert are kept; E is capped (--experts, default 16; deepseek-v3's
// groups shrink with it) so that every preset fits in memory: each token's output is a weighted sum of K expert
// MLPs, whose int4 error does not depend on E.
//
//   int4_accuracy [--tokens 64] [--experts 16] [--threads 0]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "moefuse/config.h"
#include "moefuse/layer.h"

using namespace moefuse;

namespace {

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

}  // namespace

int main(int argc, char** argv) {
  int64_t tokens = 64, experts = 16;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--experts")) experts = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: int4_accuracy [--tokens N] [--experts E] [--threads N]\n");
      return 2;
    }
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
        MoeConfig q = f;
        q.quant_mode = QuantMode::w4a16;
        q.quant_group_size = G;
        q.quant_symmetric = sym;
        validate(q, name);
        MoeLayer l = MoeLayer::with_random_weights(q, 1, {.threads = threads});
        const Cosine c = token_cosine(l.forward(x, true), want);
        std::printf(" %.4f (min %.4f) |", c.mean, c.min);
        std::fflush(stdout);
      }
    std::printf("\n");
  }
  return 0;
}
