// fp8_act_timing: the FP8-activation chain (fp8_activations: dynamic_1x128) against the bf16-activation FP8 layer on
// the same random FP8 weights, alternating forward by forward in one process (the VM's bandwidth drifts between
// minutes, so variants are only compared within the same seconds). Not a test and not part of `moefuse bench`.
//
//   fp8_act_timing [--preset qwen3-30b-a3b] [--experts 0 (the preset's)] [--tokens 1,512] [--threads 2]
//                  [--forwards 20] [--seed 0]
//
// Variants: fp8/chain and fp8/superkernel (decode forwards, the path `moefuse bench` reports for decode) with
// bf16 activations, and fp8a/chain. Each forward has its own random tokens (so the active experts change, as in
// decode). Prints per token count each variant's median and minimum ms and the weight bytes a forward read.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/layer.h"

int main(int argc, char** argv) {
  using namespace moefuse;
  std::string preset = "qwen3-30b-a3b";
  std::vector<int64_t> tokens = {1, 512};
  int64_t experts = 0, forwards = 20;
  int threads = 2;
  uint64_t seed = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset") preset = v;
    else if (k == "--experts") experts = std::atoll(v.c_str());
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--forwards") forwards = std::atoll(v.c_str());
    else if (k == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--tokens") {
      tokens.clear();
      for (size_t p = 0; p < v.size();) {
        const size_t q = v.find(',', p);
        tokens.push_back(std::atoll(v.substr(p, q - p).c_str()));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  MoeConfig c = load_preset(preset);
  if (experts > 0) c.num_experts = experts;
  c.n_group = std::min(c.n_group, c.num_experts / 2);
  c.topk_group = std::min(c.topk_group, c.n_group);
  validate(c, "fp8_act_timing");
  struct Variant {
    const char* name;
    MoeLayer layer;
    bool decode_only;
  };
  MoeConfig a = c, s = c;
  a.fp8_activations = Fp8Activations::dynamic_1x128;
  s.enable_superkernel = false;
  std::vector<Variant> vs;
  vs.push_back({"fp8/chain", MoeLayer::with_random_fp8_weights(s, seed, {.threads = threads}), false});
  vs.push_back({"fp8/superkernel", MoeLayer::with_random_fp8_weights(c, seed, {.threads = threads}), true});
  vs.push_back({"fp8a/chain", MoeLayer::with_random_fp8_weights(a, seed, {.threads = threads}), false});
  std::printf("%s E=%lld H=%lld I=%lld K=%lld shared=%lld threads=%d kernel(fp8a)=", preset.c_str(),
              (long long)c.num_experts, (long long)c.hidden_size, (long long)c.moe_intermediate_size,
              (long long)c.num_experts_per_tok, (long long)c.shared_expert_width(), threads);
  {
    const Tensor x = random_tokens(1, c.hidden_size, 1, c.dtype);
    vs[2].layer.forward(x, false);
    std::printf("%s\n", vs[2].layer.kernel().c_str());
  }
  for (int64_t T : tokens) {
    const bool decode = T <= 32;
    std::vector<std::vector<double>> ms(vs.size());
    std::vector<int64_t> bytes(vs.size(), 0);
    for (int64_t f = 0; f < forwards; ++f)
      for (size_t i = 0; i < vs.size(); ++i) {
        if (vs[i].decode_only && !decode) continue;
        const Tensor x = random_tokens(T, c.hidden_size, seed + 1000 * uint64_t(f) + i, c.dtype);
        const auto t0 = std::chrono::steady_clock::now();
        vs[i].layer.forward(x, !decode);
        ms[i].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        bytes[i] = vs[i].layer.last_timings().weight_bytes;
      }
    for (size_t i = 0; i < vs.size(); ++i) {
      if (ms[i].empty()) continue;
      std::sort(ms[i].begin(), ms[i].end());
      std::printf("T=%-5lld %-16s median %9.3f ms  min %9.3f ms  weights %.1f MB  (%s)\n", (long long)T, vs[i].name,
                  ms[i][ms[i].size() / 2], ms[i][0], double(bytes[i]) / 1e6, vs[i].layer.path().c_str());
    }
  }
  return 0;
}
