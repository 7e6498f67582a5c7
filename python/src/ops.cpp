// python/src/ops.cpp — the operators, bound one to one to the C++ API (include/moefuse/ops/*.h).
//
// These are the raw entry points: every tensor is a moefuse._core.Tensor (or None for an optional one), every
// argument is positional-or-keyword with its C++ name. moefuse/ops.py gives them torch_npu's names, signatures,
// defaults and the conversion from and to numpy / torch. The GIL is released while an operator computes.
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "py_tensor.h"

namespace moefuse::python {

namespace {

using T = const PyTensor&;
using OptT = const PyTensor*;

PyTensor result(Tensor t) { return PyTensor{std::move(t), {}}; }

std::optional<DType> parse_dtype(const std::optional<std::string>& name, const char* op, const char* arg) {
  if (!name) return std::nullopt;
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64, DType::boolean})
    if (dtype_name(t) == *name) return t;
  throw TypeError(std::string(op) + ": " + arg + ": expected a moefuse dtype name, got " + *name);
}

}  // namespace

std::atomic<bool> g_last_call_released_gil{false};

void bind_ops(nb::module_& m) {
  using nb::arg;
  m.def("_last_call_released_gil", [] { return g_last_call_released_gil.exchange(false); },
        "Whether the last operator (or layer) call ran without the GIL (reset by reading it). For tests.");

  m.def(
      "gating_top_k",
      [](T x, int64_t k, OptT bias, OptT input_ids, OptT tid2eid, int64_t k_group, int64_t group_count,
         int64_t group_select_mode, int64_t renorm, int64_t norm_type, bool out_flag, double routed_scaling_factor,
         double eps) {
        GatingTopKOptions o;
        o.bias = opt(bias);
        o.input_ids = opt(input_ids);
        o.tid2eid = opt(tid2eid);
        o.k_group = k_group;
        o.group_count = group_count;
        o.group_select_mode = group_select_mode;
        o.renorm = renorm;
        o.norm_type = norm_type;
        o.out_flag = out_flag;
        o.routed_scaling_factor = routed_scaling_factor;
        o.eps = eps;
        GatingTopKResult r = nogil([&] { return gating_top_k(x.tensor, k, o); });
        return std::make_tuple(result(r.y), result(r.expert_idx), result(r.out));
      },
      arg("x"), arg("k"), arg("bias").none(), arg("input_ids").none(), arg("tid2eid").none(), arg("k_group"),
      arg("group_count"), arg("group_select_mode"), arg("renorm"), arg("norm_type"), arg("out_flag"),
      arg("routed_scaling_factor"), arg("eps"));

  m.def(
      "gating_top_k_softmax",
      [](T x, OptT finished, int64_t k) {
        GatingTopKSoftmaxResult r = nogil([&] { return gating_top_k_softmax(x.tensor, opt(finished), k); });
        return std::make_tuple(result(r.y), result(r.expert_idx), result(r.row_idx));
      },
      arg("x"), arg("finished").none(), arg("k"));

  m.def(
      "gating_top_k_softmax_v2",
      [](T x, int64_t k, OptT finished, int64_t renorm, bool output_softmax) {
        GatingTopKSoftmaxV2Options o;
        o.k = k;
        o.finished = opt(finished);
        o.renorm = renorm;
        o.output_softmax = output_softmax;
        GatingTopKSoftmaxV2Result r = nogil([&] { return gating_top_k_softmax_v2(x.tensor, o); });
        return std::make_tuple(result(r.y), result(r.expert_idx), result(r.softmax_out));
      },
      arg("x"), arg("k"), arg("finished").none(), arg("renorm"), arg("output_softmax"));

  m.def(
      "init_routing",
      [](T x, T row_idx, T expert_idx, int64_t active_num) {
        InitRoutingResult r =
            nogil([&] { return init_routing(x.tensor, row_idx.tensor, expert_idx.tensor, active_num); });
        return std::make_tuple(result(r.expanded_x), result(r.expanded_row_idx), result(r.expanded_expert_idx));
      },
      arg("x"), arg("row_idx"), arg("expert_idx"), arg("active_num"));

  m.def(
      "init_routing_v2",
      [](T x, T expert_idx, OptT scale, OptT offset, int64_t active_num, int64_t expert_capacity, int64_t expert_num,
         int64_t drop_pad_mode, int64_t expert_tokens_num_type, bool expert_tokens_num_flag, int64_t quant_mode,
         std::vector<int64_t> active_expert_range, int64_t row_idx_type, std::optional<std::string> x_dtype) {
        InitRoutingV2Options o;
        o.scale = opt(scale);
        o.offset = opt(offset);
        o.active_num = active_num;
        o.expert_capacity = expert_capacity;
        o.expert_num = expert_num;
        o.drop_pad_mode = drop_pad_mode;
        o.expert_tokens_num_type = expert_tokens_num_type;
        o.expert_tokens_num_flag = expert_tokens_num_flag;
        o.quant_mode = quant_mode;
        o.active_expert_range = std::move(active_expert_range);
        o.row_idx_type = row_idx_type;
        o.x_dtype = parse_dtype(x_dtype, "init_routing_v2", "x_dtype");
        InitRoutingV2Result r = nogil([&] { return init_routing_v2(x.tensor, expert_idx.tensor, o); });
        return std::make_tuple(result(r.expanded_x), result(r.expanded_row_idx),
                               result(r.expert_token_cumsum_or_count), result(r.expanded_scale));
      },
      arg("x"), arg("expert_idx"), arg("scale").none(), arg("offset").none(), arg("active_num"),
      arg("expert_capacity"), arg("expert_num"), arg("drop_pad_mode"), arg("expert_tokens_num_type"),
      arg("expert_tokens_num_flag"), arg("quant_mode"), arg("active_expert_range"), arg("row_idx_type"),
      arg("x_dtype").none());

  m.def(
      "grouped_matmul",
      [](T x, T weight, OptT bias, OptT scale, OptT offset, OptT antiquant_scale, OptT antiquant_offset,
         OptT per_token_scale, OptT group_list, int64_t split_item, std::optional<int64_t> group_type,
         int64_t group_list_type, int64_t act_type, std::vector<int64_t> tuning_config,
         std::optional<std::string> output_dtype) {
        GroupedMatmulOptions o;
        o.bias = opt(bias);
        o.scale = opt(scale);
        o.offset = opt(offset);
        o.antiquant_scale = opt(antiquant_scale);
        o.antiquant_offset = opt(antiquant_offset);
        o.per_token_scale = opt(per_token_scale);
        o.group_list = opt(group_list);
        o.split_item = split_item;
        o.group_type = group_type;
        o.group_list_type = group_list_type;
        o.act_type = act_type;
        o.tuning_config = std::move(tuning_config);
        o.output_dtype = parse_dtype(output_dtype, "grouped_matmul", "output_dtype");
        return result(nogil([&] { return grouped_matmul(x.tensor, weight.tensor, o); }));
      },
      arg("x"), arg("weight"), arg("bias").none(), arg("scale").none(), arg("offset").none(),
      arg("antiquant_scale").none(), arg("antiquant_offset").none(), arg("per_token_scale").none(),
      arg("group_list").none(), arg("split_item"), arg("group_type").none(), arg("group_list_type"),
      arg("act_type"), arg("tuning_config"), arg("output_dtype").none());

  m.def(
      "swiglu", [](T x, int64_t dim) { return result(nogil([&] { return swiglu(x.tensor, dim); })); }, arg("x"),
      arg("dim"));

  m.def(
      "clipped_swiglu",
      [](T x, OptT group_index, int64_t dim, double alpha, double limit, double bias, bool interleaved) {
        ClippedSwigluOptions o;
        o.group_index = opt(group_index);
        o.dim = dim;
        o.alpha = alpha;
        o.limit = limit;
        o.bias = bias;
        o.interleaved = interleaved;
        return result(nogil([&] { return clipped_swiglu(x.tensor, o); }));
      },
      arg("x"), arg("group_index").none(), arg("dim"), arg("alpha"), arg("limit"), arg("bias"), arg("interleaved"));

  m.def(
      "dequant_swiglu_quant",
      [](T x, OptT weight_scale, OptT activation_scale, OptT bias, OptT quant_scale, OptT quant_offset,
         OptT group_index, bool activate_left, int64_t quant_mode, std::optional<int64_t> dst_type,
         std::optional<int64_t> round_mode, std::optional<int64_t> activate_dim, int64_t swiglu_mode,
         double clamp_limit, double glu_alpha, double glu_bias) {
        DequantSwigluQuantOptions o;
        o.weight_scale = opt(weight_scale);
        o.activation_scale = opt(activation_scale);
        o.bias = opt(bias);
        o.quant_scale = opt(quant_scale);
        o.quant_offset = opt(quant_offset);
        o.group_index = opt(group_index);
        o.activate_left = activate_left;
        o.quant_mode = quant_mode;
        o.dst_type = dst_type;
        o.round_mode = round_mode;
        o.activate_dim = activate_dim;
        o.swiglu_mode = swiglu_mode;
        o.clamp_limit = clamp_limit;
        o.glu_alpha = glu_alpha;
        o.glu_bias = glu_bias;
        DequantSwigluQuantResult r = nogil([&] { return dequant_swiglu_quant(x.tensor, o); });
        return std::make_tuple(result(r.y), result(r.scale));
      },
      arg("x"), arg("weight_scale").none(), arg("activation_scale").none(), arg("bias").none(),
      arg("quant_scale").none(), arg("quant_offset").none(), arg("group_index").none(), arg("activate_left"),
      arg("quant_mode"), arg("dst_type").none(), arg("round_mode").none(), arg("activate_dim").none(),
      arg("swiglu_mode"), arg("clamp_limit"), arg("glu_alpha"), arg("glu_bias"));

  m.def(
      "swiglu_clip_quant",
      [](T x, T group_index, T group_alpha, bool activate_left, int64_t quant_mode, int64_t clamp_mode) {
        SwigluClipQuantOptions o;
        o.activate_left = activate_left;
        o.quant_mode = quant_mode;
        o.clamp_mode = clamp_mode;
        SwigluClipQuantResult r =
            nogil([&] { return swiglu_clip_quant(x.tensor, group_index.tensor, group_alpha.tensor, o); });
        return std::make_tuple(result(r.y), result(r.scale));
      },
      arg("x"), arg("group_index"), arg("group_alpha"), arg("activate_left"), arg("quant_mode"), arg("clamp_mode"));

  m.def(
      "finalize_routing",
      [](T expanded_permuted_rows, OptT skip1, OptT skip2, OptT bias, OptT scales, T expanded_src_to_dst_row,
         OptT export_for_source_row, int64_t drop_pad_mode, int64_t k) {
        return result(nogil([&] {
          return finalize_routing(expanded_permuted_rows.tensor, opt(skip1), opt(skip2), opt(bias), opt(scales),
                                  expanded_src_to_dst_row.tensor, opt(export_for_source_row), drop_pad_mode, k);
        }));
      },
      arg("expanded_permuted_rows"), arg("skip1").none(), arg("skip2").none(), arg("bias").none(),
      arg("scales").none(), arg("expanded_src_to_dst_row"), arg("export_for_source_row").none(),
      arg("drop_pad_mode"), arg("k"));
}

}  // namespace moefuse::python
