// `moefuse verify`: runs a layer and its oracle (reference_layer_forward: an independent per-token, per-expert
// loop, one thread, no chunking) on the same input and checks that the outputs are equal and finite — bitwise in the
// portable tier, within docs/layer.md's per-token tolerance in the native one —, that repeated forwards give the
// same bits, and that the layer's routing (top-k indices and combine weights) is the oracle's.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "commands.h"
#include "common.h"

namespace moefuse::cli {
namespace {

// Element-wise comparison of two tensors of the same dtype and shape (contiguous).
struct Comparison {
  int64_t elements = 0;
  int64_t mismatched = 0;  // elements whose bits differ
  double max_abs = 0;      // over elements where both values are finite
  double max_rel = 0;      // |a - b| / |b| over elements where both are finite and b != 0
  int64_t non_finite = 0;  // elements of `got` that are NaN or infinite
};

Comparison compare(const Tensor& got, const Tensor& want) {
  const Tensor a = got.contiguous(), b = want.contiguous();
  const Tensor fa = a.to(DType::f32), fb = b.to(DType::f32);
  Comparison c;
  c.elements = a.numel();
  const size_t es = a.element_size();
  const auto* pa = static_cast<const unsigned char*>(a.data());
  const auto* pb = static_cast<const unsigned char*>(b.data());
  for (int64_t i = 0; i < c.elements; ++i) {
    if (std::memcmp(pa + size_t(i) * es, pb + size_t(i) * es, es) != 0) ++c.mismatched;
    const double x = fa.data_as<const float>()[i], y = fb.data_as<const float>()[i];
    if (!std::isfinite(x)) ++c.non_finite;
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    const double d = std::fabs(x - y);
    c.max_abs = std::max(c.max_abs, d);
    if (y != 0) c.max_rel = std::max(c.max_rel, d / std::fabs(y));
  }
  return c;
}

// The native tier's bound on each token's relative L2 error, ||y - y_oracle||_2 <= 2^-6 * ||y_oracle||_2
// (docs/layer.md §2, "Numerics tier": a bf16 ulp is 2^-8 relative; the tier's GEMM roundings turn into at most a
// bf16 ulp per element that flips at a stage boundary, which 2^-6 bounds with room).
constexpr double kNativeRelL2 = 1.0 / 64;

// The largest relative L2 error of a row of `got` against the same row of `want` ([T, H], same dtype): per row
// ||got - want||_2 / ||want||_2 in double; a row whose `want` is all zeros counts as 0 when `got`'s is too, else as
// infinity. 0 for no rows.
double max_row_rel_l2(const Tensor& got, const Tensor& want) {
  const Tensor a = got.contiguous().to(DType::f32), b = want.contiguous().to(DType::f32);
  const int64_t T = a.size(0), H = a.size(1);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    const float* pa = a.data_as<const float>() + t * H;
    const float* pb = b.data_as<const float>() + t * H;
    double diff = 0, norm = 0;
    for (int64_t h = 0; h < H; ++h) {
      const double d = double(pa[h]) - double(pb[h]);
      diff += d * d;
      norm += double(pb[h]) * double(pb[h]);
    }
    const double rel = norm > 0 ? std::sqrt(diff / norm) : diff > 0 || std::isnan(diff) ? INFINITY : 0.0;
    worst = std::isnan(rel) ? INFINITY : std::max(worst, rel);
  }
  return worst;
}

// The command's own test hook (docs/cli.md): MOEFUSE_VERIFY_FAULT=router makes the layer wrong on purpose, its
// router's row of expert 0 negated while the oracle keeps the true weights, so that a test can see verify fail.
MoeLayer with_fault(const LayerArgs& a, const MoeConfig& config, MoeLayer layer) {
  const char* fault = std::getenv("MOEFUSE_VERIFY_FAULT");
  if (fault == nullptr || std::string(fault) != "router") return layer;
  LayerWeights w = layer.weights();
  Tensor router = w.router.to(DType::f32);
  for (int64_t i = 0; i < config.hidden_size; ++i) router.set_item({0, i}, -router.item({0, i}));
  w.router = router.to(config.dtype);
  LayerOptions o;
  o.threads = a.threads;
  o.allow_non_finite_weights = true;
  o.numerics = layer.numerics();
  return MoeLayer(config, w, o);
}

int verify(const LayerArgs& a) {
  LayerJob job(a);
  MoeLayer& layer = job.layer;
  // The oracle's weights: the layer's own, unpacked (bitwise what it was given).
  const LayerWeights oracle_weights = layer.weights();
  layer = with_fault(a, job.lc.config, std::move(layer));

  Tensor y;
  int64_t repeat_mismatched = 0;
  {
    Progress progress("verify", a.iters + 1);
    LayerRouting layer_routing;
    y = layer.forward(job.in.x, a.prefill, &layer_routing);
    progress.step();
    for (int i = 1; i < a.iters; ++i) {
      repeat_mismatched += compare(layer.forward(job.in.x, a.prefill), y).mismatched;
      progress.step();
    }
    LayerRouting reference_routing;
    const Tensor reference = reference_layer_forward(job.lc.config, oracle_weights, job.in.x, &reference_routing);
    progress.step();

    const Comparison out = compare(y, reference);
    const Comparison routing = compare(layer_routing.topk_idx, reference_routing.topk_idx);
    const Comparison routing_weights = compare(layer_routing.topk_weight, reference_routing.topk_weight);
    const bool routing_matched = routing.mismatched == 0 && routing_weights.mismatched == 0;
    const bool finite = out.non_finite == 0;
    // portable: bitwise. native: each token within kNativeRelL2 (the routing, on the portable router, still exact).
    const bool native = layer.numerics() == Numerics::native;
    const double rel_l2 = max_row_rel_l2(y, reference);
    const bool within = native ? rel_l2 <= kNativeRelL2 : out.mismatched == 0;
    const bool pass = within && repeat_mismatched == 0 && routing_matched && finite;
    const Json tolerance =
        native ? Json{{"kind", "relative_l2_per_token"}, {"max_relative_l2", kNativeRelL2}}
               : Json{{"max_abs_error", 0}, {"mismatched_elements", 0}, {"kind", "bitwise"}};
    const Checksum sum = checksum(y);
    if (!a.output.empty()) write_output(job.files.staging("--output"), y);
    job.files.commit();

    const Json model = describe_model(job.lc), execution = describe_execution(a, job.lc, layer, job.in);
    if (a.json) {
      Json j{{"command", "verify"},
             {"version", MOEFUSE_VERSION},
             {"model", model},
             {"execution", execution},
             {"iters", a.iters},
             {"tokens", job.in.x.size(0)},
             {"reference", "reference_layer_forward"},
             {"tolerance", tolerance},
             {"elements", out.elements},
             {"mismatched_elements", out.mismatched},
             {"max_abs_error", out.max_abs},
             {"max_rel_error", out.max_rel},
             {"max_token_relative_l2", rel_l2},
             {"non_finite_elements", out.non_finite},
             {"repeat_mismatched_elements", repeat_mismatched},
             {"routing", Json{{"compared", "layer vs reference"},
                              {"indices", routing.elements},
                              {"mismatched", routing.mismatched},
                              {"weights_mismatched", routing_weights.mismatched},
                              {"matched", routing_matched}}},
             {"checksum", Json{{"sum", sum.sum}, {"fnv1a64", hex64(sum.fnv1a64)}}},
             {"output", a.output.empty() ? Json(nullptr) : Json(a.output)},
             {"pass", pass}};
      print_json(j);
      return pass ? 0 : 1;
    }
    print_description(model, execution);
    std::printf("reference:  reference_layer_forward (independent per-token, per-expert loop, one thread, "
                "unchunked)\n");
    std::printf("compared:   %lld elements: %lld mismatched, max abs error %.9g, max rel error %.9g, max token "
                "relative L2 error %.9g\n",
                static_cast<long long>(out.elements), static_cast<long long>(out.mismatched), out.max_abs,
                out.max_rel, rel_l2);
    std::printf("repeats:    %d forward(s), %lld element(s) differing from the first\n", a.iters,
                static_cast<long long>(repeat_mismatched));
    std::printf("finite:     %s (%lld of %lld output elements NaN or infinite)\n", finite ? "yes" : "NO",
                static_cast<long long>(out.non_finite), static_cast<long long>(out.elements));
    std::printf("routing:    %s (top-k indices and weights of the layer vs the reference: %lld and %lld of %lld "
                "differ)\n",
                routing_matched ? "matched" : "DIFFERENT", static_cast<long long>(routing.mismatched),
                static_cast<long long>(routing_weights.mismatched), static_cast<long long>(routing.elements));
    if (native)
      std::printf("tolerance:  native tier: per token ||y - y_oracle||_2 <= 2^-6 * ||y_oracle||_2 (docs/layer.md), "
                  "routing exact, and finite\n");
    else
      std::printf("tolerance:  bitwise (every output element identical, max abs error 0), and finite\n");
    std::printf("checksum:   sum %.17g, fnv1a64 %s\n", sum.sum, hex64(sum.fnv1a64).c_str());
    if (!a.output.empty()) std::printf("output:     %s (float32, the layer's output)\n", a.output.c_str());
    std::printf("result:     %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
  }
}

}  // namespace

void add_verify_command(CLI::App& app, int& status) {
  CLI::App* cmd =
      app.add_subcommand("verify", "Check a layer against its scalar reference (bitwise; native tier: within "
                                   "docs/layer.md's tolerance); exit 1 on a difference");
  auto args = std::make_shared<LayerArgs>();
  args->iters = 1;
  add_layer_options(cmd, *args, "Forwards of the layer, all compared bitwise with the first (default 1)");
  cmd->callback([args, &status] { status = verify(*args); });
}

}  // namespace moefuse::cli
