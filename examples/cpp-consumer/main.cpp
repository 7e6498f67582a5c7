// One operator and one small layer through the installed public headers. Exits 0 when both give what they promise.
#include <cmath>
#include <cstdio>
#include <string>

#include <moefuse/config.h>
#include <moefuse/error.h>
#include <moefuse/layer.h>
#include <moefuse/ops.h>

int main() {
  try {
    // swiglu: silu(a) * b over the halves of the last dimension, in fp32.
    const moefuse::Tensor x = moefuse::Tensor::from_values<float>({1, 4}, {1.0f, -2.0f, 3.0f, 0.5f});
    const moefuse::Tensor y = moefuse::swiglu(x);
    const float* v = y.data_as<const float>();
    const float want0 = 1.0f / (1.0f + std::exp(-1.0f)) * 3.0f;
    std::printf("swiglu: [%g, %g] (expected about [%g, ...])\n", v[0], v[1], want0);
    if (y.numel() != 2 || std::fabs(v[0] - want0) > 1e-6f) return 1;

    // A small olmoe-style layer with random weights on two threads.
    moefuse::MoeConfig c = moefuse::load_preset("olmoe-1b-7b");
    c.hidden_size = 64;
    c.moe_intermediate_size = 32;
    moefuse::validate(c, "consumer config");
    moefuse::MoeLayer layer = moefuse::MoeLayer::with_random_weights(c, 1, {.threads = 2});
    const moefuse::Tensor out = layer.forward(moefuse::random_tokens(4, c.hidden_size, 1, c.dtype));
    const moefuse::Tensor f = out.to(moefuse::DType::f32);
    double sum = 0;
    for (int64_t i = 0; i < f.numel(); ++i) sum += f.data_as<const float>()[i];
    std::printf("layer: %s, out [%lld, %lld], path %s, sum %.6f\n", std::string(moefuse::model_type_name(c.model_type)).c_str(),
                static_cast<long long>(out.size(0)), static_cast<long long>(out.size(1)), layer.path().c_str(), sum);
    return out.size(0) == 4 && out.size(1) == 64 && std::isfinite(sum) ? 0 : 1;
  } catch (const moefuse::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 2;
  }
}
