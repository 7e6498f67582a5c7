// python/src/layer.cpp — the MoE layer (include/moefuse/layer.h) and its configuration (include/moefuse/config.h).
//
// Raw entry points, as ops.cpp: moefuse/layer.py gives them the public names (moefuse.MoeLayer.from_config, ...)
// and converts Python arrays and config dicts. Loading and forward passes run without the GIL. A layer is safe to
// use from several Python threads: its forward passes (which reuse per-layer workspaces in ge_graph mode) run one at
// a time, serialised by a mutex taken after the GIL has been released.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "moefuse/model.h"
#include "numerics_arg.h"
#include "py_tensor.h"

namespace moefuse::python {

namespace {

struct PyLayer {
  explicit PyLayer(MoeLayer l) : layer(std::move(l)) {}
  MoeLayer layer;
  std::mutex forward_mutex;  // forward() mutates the layer's workspaces and timings
};

// The config in the YAML structure (config.h), keys in to_yaml()'s order, values as Python str / bool / int / float.
nb::dict config_dict(const MoeConfig& c) {
  nb::dict model;
  model["model_type"] = std::string(model_type_name(c.model_type));
  model["enable_superkernel"] = c.enable_superkernel;
  model["num_experts"] = c.num_experts;
  model["num_experts_per_tok"] = c.num_experts_per_tok;
  model["moe_chunk_max_len"] = c.moe_chunk_max_len;
  model["hidden_size"] = c.hidden_size;
  model["moe_intermediate_size"] = c.moe_intermediate_size;
  model["n_shared_experts"] = c.n_shared_experts;
  model["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
  model["scoring_func"] = std::string(scoring_func_name(c.scoring_func));
  model["norm_topk_prob"] = c.norm_topk_prob;
  model["n_group"] = c.n_group;
  model["topk_group"] = c.topk_group;
  model["routed_scaling_factor"] = c.routed_scaling_factor;
  model["dtype"] = std::string(dtype_name(c.dtype));
  model["quant_mode"] = std::string(quant_mode_name(c.quant_mode));
  if (int4_weights(c.quant_mode) || c.quant_group_size != 128 || !c.quant_symmetric) {  // as to_yaml
    model["quant_group_size"] = c.quant_group_size;
    model["quant_symmetric"] = c.quant_symmetric;
  }
  model["router_logits_dtype"] = std::string(router_logits_dtype_name(c.router_logits_dtype));
  if (c.fp8_activations != Fp8Activations::none)  // as to_yaml: only when set
    model["fp8_activations"] = std::string(fp8_activations_name(c.fp8_activations));
  nb::dict d;
  d["exe_mode"] = std::string(exe_mode_name(c.exe_mode));
  if (c.numerics) d["numerics"] = std::string(numerics_name(*c.numerics));  // as to_yaml: only when set
  d["model_config"] = model;
  return d;
}

nb::dict timings_dict(const LayerTimings& t) {
  nb::dict d;
  d["router"] = t.router;
  d["gating"] = t.gating;
  d["routing"] = t.routing;
  d["experts"] = t.experts;
  d["shared"] = t.shared;
  d["combine"] = t.combine;
  d["total"] = t.total;
  d["tokens"] = t.tokens;
  d["chunks"] = t.chunks;
  d["weight_bytes"] = t.weight_bytes;
  d["active_experts"] = t.active_experts;
  return d;
}

// The defined weights of a layer, by their LayerWeights member names, as results sharing the layer's storage.
std::vector<std::pair<std::string, PyTensor>> weights_list(const LayerWeights& w) {
  std::vector<std::pair<std::string, PyTensor>> out;
  auto add = [&](const char* name, const Tensor& t) {
    if (t.defined()) out.emplace_back(name, PyTensor{t, {}});
  };
  add("router", w.router);
  add("router_bias", w.router_bias);
  add("w13", w.w13);
  add("w2", w.w2);
  add("w13_scale", w.w13_scale);
  add("w2_scale", w.w2_scale);
  add("w13_zero", w.w13_zero);
  add("w2_zero", w.w2_zero);
  add("smooth_scale1", w.smooth_scale1);
  add("smooth_scale2", w.smooth_scale2);
  add("clip_alpha", w.clip_alpha);
  add("shared_w13", w.shared_w13);
  add("shared_w2", w.shared_w2);
  add("shared_w13_scale", w.shared_w13_scale);
  add("shared_w2_scale", w.shared_w2_scale);
  add("shared_w13_zero", w.shared_w13_zero);
  add("shared_w2_zero", w.shared_w2_zero);
  add("shared_gate", w.shared_gate);
  add("w13_perm", w.w13_perm);
  add("shared_w13_perm", w.shared_w13_perm);
  return out;
}

}  // namespace

void bind_layer(nb::module_& m) {
  using nb::arg;

  m.def("preset_names", &moefuse::preset_names, "The built-in presets, sorted by name.");
  m.def(
      "model_config",
      [](const std::string& path) {
        const ModelConfig mc = load_model_config(path);
        nb::dict d;
        d["source"] = mc.source;
        d["num_hidden_layers"] = mc.num_hidden_layers;
        d["moe_layers"] = mc.moe_layers;
        d["quant_mode"] = std::string(quant_mode_name(mc.quant_mode));
        d["quantized_layers"] = mc.quantized_layers;
        if (mc.fp8.source.empty()) d["fp8_weight_block"] = nb::none();
        else d["fp8_weight_block"] = std::vector<int64_t>{mc.fp8.block_n, mc.fp8.block_k};
        if (mc.gptq.source.empty()) {
          d["gptq"] = nb::none();
        } else {
          nb::dict g;
          g["quant_method"] = mc.gptq.quant_method;
          g["bits"] = mc.gptq.bits;
          g["group_size"] = mc.gptq.group_size;
          g["sym"] = mc.gptq.sym;
          g["desc_act"] = mc.gptq.desc_act;
          g["checkpoint_format"] = mc.gptq.checkpoint_format;
          d["gptq"] = g;
        }
        d["layer"] = mc.layer;
        return d;
      },
      arg("path"), "load_model_config: a model folder's config.json (or the file).");

  nb::class_<MoeConfig>(m, "Config", "A validated moefuse::MoeConfig.")
      .def_static(
          "from_yaml", [](std::string_view text, std::string_view source) { return parse_config_yaml(text, source); },
          arg("text"), arg("source"), "parse_config_yaml: YAML text; `source` starts every error message.")
      .def_static("from_file", &load_config_file, arg("path"), "load_config_file: a YAML file.")
      .def_static(
          "from_preset", [](std::string_view name) { return load_preset(name); }, arg("name"),
          "load_preset: a built-in preset ('default' = olmoe-1b-7b).")
      .def("to_dict", &config_dict, "The config in the YAML structure: {'exe_mode': ..., 'model_config': {...}}.")
      .def("to_yaml", &to_yaml, "The YAML text of the config (every key).")
      .def("__eq__", [](const MoeConfig& a, const MoeConfig& b) { return a == b; })
      .def("__repr__", [](const MoeConfig& c) { return "moefuse._core.Config(\n" + to_yaml(c) + ")"; });

  nb::class_<PyLayer>(m, "MoeLayer", "A moefuse::MoeLayer.")
      .def_static(
          "with_random_weights",
          [](const MoeConfig& config, uint64_t seed, int threads, const std::optional<std::string>& numerics) {
            return nogil([&] {
              return std::make_unique<PyLayer>(MoeLayer::with_random_weights(
                  config, seed, {.threads = threads, .numerics = numerics_argument(numerics)}));
            });
          },
          arg("config"), arg("seed"), arg("threads"), arg("numerics").none())
      .def_static(
          "from_checkpoint",
          [](const MoeConfig& config, const std::string& path, int64_t layer_index, int threads,
             bool allow_non_finite, const std::optional<std::string>& numerics) {
            return nogil([&] {
              Checkpoint ck(path);
              return std::make_unique<PyLayer>(MoeLayer::from_checkpoint(
                  config, ck, layer_index,
                  {.threads = threads,
                   .allow_non_finite_weights = allow_non_finite,
                   .numerics = numerics_argument(numerics)}));
            });
          },
          arg("config"), arg("path"), arg("layer_index"), arg("threads"), arg("allow_non_finite"),
          arg("numerics").none())
      .def_static(
          "from_model_folder",
          [](const std::string& dir, int64_t layer_index, const MoeConfig* options, const std::string& options_source,
             int threads, bool allow_non_finite, const std::optional<std::string>& numerics) {
            return nogil([&] {
              return std::make_unique<PyLayer>(load_model_layer(
                  dir, layer_index,
                  {.threads = threads,
                   .allow_non_finite_weights = allow_non_finite,
                   .numerics = numerics_argument(numerics)},
                  options, options_source));
            });
          },
          arg("dir"), arg("layer_index"), arg("options").none(), arg("options_source"), arg("threads"),
          arg("allow_non_finite"), arg("numerics").none())
      .def(
          "forward",
          [](PyLayer& self, const PyTensor& x, bool is_prefill) {
            return PyTensor{nogil([&] {
                              std::lock_guard<std::mutex> lock(self.forward_mutex);
                              return self.layer.forward(x.tensor, is_prefill);
                            }),
                            {}};
          },
          arg("x"), arg("is_prefill"))
      .def(
          "reference_forward",
          [](const PyLayer& self, const PyTensor& x) {
            // Reads the config and the weights only, which no forward changes: no lock needed.
            return PyTensor{nogil([&] {
                              return reference_layer_forward(self.layer.config(), self.layer.weights(), x.tensor);
                            }),
                            {}};
          },
          arg("x"))
      .def_prop_ro("config", [](const PyLayer& self) { return self.layer.config(); })
      .def_prop_ro("threads", [](const PyLayer& self) { return self.layer.threads(); })
      .def_prop_ro("numerics", [](const PyLayer& self) { return std::string(numerics_name(self.layer.numerics())); })
      .def_prop_ro("path", [](PyLayer& self) {
        std::string p;
        {
          nb::gil_scoped_release release;
          std::lock_guard<std::mutex> lock(self.forward_mutex);
          p = self.layer.path();
        }
        return p;
      })
      .def_prop_ro("expert_tokens",
                   [](PyLayer& self) {
                     nb::gil_scoped_release release;
                     std::lock_guard<std::mutex> lock(self.forward_mutex);
                     return self.layer.expert_tokens();
                   })
      .def_prop_ro("cumulative_expert_tokens",
                   [](PyLayer& self) {
                     nb::gil_scoped_release release;
                     std::lock_guard<std::mutex> lock(self.forward_mutex);
                     return self.layer.cumulative_expert_tokens();
                   })
      .def_prop_ro("last_timings",
                   [](PyLayer& self) {
                     LayerTimings t;
                     {
                       nb::gil_scoped_release release;  // a forward in another thread may hold the lock
                       std::lock_guard<std::mutex> lock(self.forward_mutex);
                       t = self.layer.last_timings();
                     }
                     return timings_dict(t);
                   })
      .def("weights", [](const PyLayer& self) { return weights_list(self.layer.weights()); },
           "(name, tensor) of every defined weight: the projections unpacked from the layer's packed copy (new memory), the other weights sharing the layer's storage.");
}

}  // namespace moefuse::python
