// `moefuse verify`: runs a layer and its oracle (reference_layer_forward: the scalar reference operators, one
// thread, no chunking) on the same input and checks that the outputs are bitwise equal, that repeated forwards give
// the same bits, and that the routing (top-k expert indices) of the operator chain equals the reference's.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "base/elements.h"
#include "commands.h"
#include "common.h"
#include "layer/chain.h"

namespace moefuse::cli {
namespace {

// Element-wise comparison of two tensors of the same dtype and shape (contiguous).
struct Comparison {
  int64_t elements = 0;
  int64_t mismatched = 0;  // elements whose bits differ
  double max_abs = 0;      // over elements where both values are finite
  double max_rel = 0;      // |a - b| / |b| over elements where both are finite and b != 0
};

Comparison compare(const Tensor& got, const Tensor& want) {
  const Tensor a = got.contiguous(), b = want.contiguous();
  Comparison c;
  c.elements = a.numel();
  const size_t es = a.element_size();
  const auto* pa = static_cast<const unsigned char*>(a.data());
  const auto* pb = static_cast<const unsigned char*>(b.data());
  for (int64_t i = 0; i < c.elements; ++i) {
    if (std::memcmp(pa + size_t(i) * es, pb + size_t(i) * es, es) != 0) ++c.mismatched;
    const double x = load_element_f32(a.data(), a.dtype(), i), y = load_element_f32(b.data(), b.dtype(), i);
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    const double d = std::fabs(x - y);
    c.max_abs = std::max(c.max_abs, d);
    if (y != 0) c.max_rel = std::max(c.max_rel, d / std::fabs(y));
  }
  return c;
}

// The top-k indices the operator chain (the operators MoeLayer runs, through their public _out forms) computes for
// x, recomputed here in one unchunked pass on this thread.
Tensor operator_chain_routing(const MoeConfig& config, const LayerWeights& weights, const Tensor& x) {
  const int64_t T = x.size(0);
  if (T == 0) return Tensor::empty(DType::i32, {0, config.num_experts_per_tok});
  layer::ChainBuffers buffers = layer::plan_chain_buffers(config, T);
  const Tensor out = Tensor::empty(config.dtype, {T, config.hidden_size});
  LayerRouting routing;
  layer::run_chain(layer::operator_chain_ops(), config, weights, nullptr, x, out, buffers, nullptr, &routing);
  return routing.topk_idx.clone();  // the routing views point into `buffers`
}

int verify(const LayerArgs& a) {
  const LoadedConfig lc = load_config(a.config);
  OutputSet files;
  add_layer_files(files, a);
  const Input in = make_input(a, lc.config);
  MoeLayer layer = make_layer(a, lc.config);

  Tensor y;
  int64_t repeat_mismatched = 0;
  {
    Progress progress("verify", a.iters + 2);
    y = layer.forward(in.x, a.prefill);
    progress.step();
    for (int i = 1; i < a.iters; ++i) {
      repeat_mismatched += compare(layer.forward(in.x, a.prefill), y).mismatched;
      progress.step();
    }
    LayerRouting reference_routing;
    const Tensor reference = reference_layer_forward(lc.config, layer.weights(), in.x, &reference_routing);
    progress.step();
    const Tensor chain_idx = operator_chain_routing(lc.config, layer.weights(), in.x);
    progress.step();

    const Comparison out = compare(y, reference);
    const Comparison routing = compare(chain_idx, reference_routing.topk_idx);
    const bool routing_matched = routing.mismatched == 0;
    const bool pass = out.mismatched == 0 && repeat_mismatched == 0 && routing_matched;
    const Checksum sum = checksum(y);
    if (!a.output.empty()) write_output(files.staging("--output"), y);
    files.commit();

    const Json model = describe_model(lc), execution = describe_execution(a, layer, in);
    if (a.json) {
      Json j{{"command", "verify"},
             {"version", MOEFUSE_VERSION},
             {"model", model},
             {"execution", execution},
             {"iters", a.iters},
             {"tokens", in.x.size(0)},
             {"reference", "reference_layer_forward"},
             {"tolerance", Json{{"max_abs_error", 0}, {"mismatched_elements", 0}, {"kind", "bitwise"}}},
             {"elements", out.elements},
             {"mismatched_elements", out.mismatched},
             {"max_abs_error", out.max_abs},
             {"max_rel_error", out.max_rel},
             {"repeat_mismatched_elements", repeat_mismatched},
             {"routing", Json{{"compared", "operator chain vs reference"},
                              {"indices", routing.elements},
                              {"mismatched", routing.mismatched},
                              {"matched", routing_matched}}},
             {"checksum", Json{{"sum", sum.sum}, {"fnv1a64", hex64(sum.fnv1a64)}}},
             {"output", a.output.empty() ? Json(nullptr) : Json(a.output)},
             {"pass", pass}};
      print_json(j);
      return pass ? 0 : 1;
    }
    print_description(model, execution);
    std::printf("reference:  reference_layer_forward (scalar reference operators, one thread, unchunked)\n");
    std::printf("compared:   %lld elements: %lld mismatched, max abs error %.9g, max rel error %.9g\n",
                static_cast<long long>(out.elements), static_cast<long long>(out.mismatched), out.max_abs,
                out.max_rel);
    std::printf("repeats:    %d forward(s), %lld element(s) differing from the first\n", a.iters,
                static_cast<long long>(repeat_mismatched));
    std::printf("routing:    %s (top-k indices of the operator chain vs the reference: %lld of %lld differ)\n",
                routing_matched ? "matched" : "DIFFERENT", static_cast<long long>(routing.mismatched),
                static_cast<long long>(routing.elements));
    std::printf("tolerance:  bitwise (every output element identical, max abs error 0)\n");
    std::printf("checksum:   sum %.17g, fnv1a64 %s\n", sum.sum, hex64(sum.fnv1a64).c_str());
    if (!a.output.empty()) std::printf("output:     %s (float32, the layer's output)\n", a.output.c_str());
    std::printf("result:     %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
  }
}

}  // namespace

void add_verify_command(CLI::App& app, int& status) {
  CLI::App* cmd =
      app.add_subcommand("verify", "Check a layer against its scalar reference (bitwise); exit 1 on a difference");
  auto args = std::make_shared<LayerArgs>();
  args->iters = 1;
  add_layer_options(cmd, *args, "Forwards of the layer, all compared bitwise with the first (default 1)");
  cmd->callback([args, &status] { status = verify(*args); });
}

}  // namespace moefuse::cli
