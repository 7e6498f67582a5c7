"""The MoE operators of torch_npu, on the CPU, with torch_npu's names, arguments and defaults.

Each function computes what its C++ counterpart in ``include/moefuse/ops/*.h`` computes (that header documents
the semantics, every argument's shapes and dtypes, and every error); this module adds the torch_npu calling
convention and the conversion from and to Python arrays:

* Tensors may be numpy arrays, torch CPU tensors (``torch.bfloat16`` included) or any DLPack-capable CPU tensor.
  They are read in place, strides included: a transposed or sliced view is not copied (numpy arrays with a
  non-native byte order or unaligned data, which no view can express, are copied first).
* Results are of the kind of the operator's main input (its first tensor argument): torch tensors for a torch
  input, numpy arrays otherwise. They share memory with the buffers the C++ operator wrote (no copy).
* bf16 with numpy: an ``ml_dtypes.bfloat16`` array is accepted, and bf16 results for numpy inputs have that dtype,
  when the ``ml_dtypes`` package is installed; otherwise such a result raises TypeError (use torch tensors).
* dtype arguments (``output_dtype``, ``x_dtype``, ``dst_type``, ...) take torch dtypes, numpy dtypes, names
  (``"bfloat16"``, ``"bf16"``) or torch_npu's integer codes (c10::ScalarType: 1 = int8, 3 = int32, 5 = float16,
  6 = float32, 15 = bfloat16, ...).
* Errors: ValueError for bad values and shapes, TypeError for dtypes, MemoryError when memory runs out; the
  message names the operator (its C++ name), the argument, what was expected and what was given.
* The GIL is released while an operator computes. The operators are not differentiable (inputs that require grad
  are read through ``detach()``).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, List

import numpy as np

from . import _core
from ._tensors import (
    SUPPORTED,
    describe_dtype_arg,
    dtype_to_code,
    dtype_to_moefuse,
    from_tensor,
    kind_of,
    to_bool,
    to_float,
    to_int,
    to_int_list,
    to_optional_int,
    to_optional_tensor,
    to_tensor,
)

__all__ = [
    "npu_moe_gating_top_k",
    "npu_moe_gating_top_k_softmax",
    "npu_moe_gating_top_k_softmax_v2",
    "npu_moe_init_routing",
    "npu_moe_init_routing_v2",
    "npu_grouped_matmul",
    "npu_swiglu",
    "npu_clipped_swiglu",
    "npu_dequant_swiglu_quant",
    "npu_swiglu_clip_quant",
    "npu_moe_finalize_routing",
]

# Multiple outputs come back as named tuples (plain tuples to unpack, as torch_npu returns them), with
# torch_npu's output names.
GatingTopKResult = namedtuple("GatingTopKResult", ["y", "expert_idx", "out"])
GatingTopKSoftmaxResult = namedtuple("GatingTopKSoftmaxResult", ["y", "expert_idx", "row_idx"])
GatingTopKSoftmaxV2Result = namedtuple("GatingTopKSoftmaxV2Result", ["y", "expert_idx", "softmax_out"])
InitRoutingResult = namedtuple("InitRoutingResult", ["expanded_x", "expanded_row_idx", "expanded_expert_idx"])
InitRoutingV2Result = namedtuple(
    "InitRoutingV2Result", ["expanded_x", "expanded_row_idx", "expert_token_cumsum_or_count", "expanded_scale"])
DequantSwigluQuantResult = namedtuple("DequantSwigluQuantResult", ["y", "scale"])
SwigluClipQuantResult = namedtuple("SwigluClipQuantResult", ["y", "scale"])


def _results(cls, kind: str, op: str, tensors) -> Any:
    return cls(*(from_tensor(t, kind, op, name) for t, name in zip(tensors, cls._fields)))


# ------------------------------------------------------------------------------------------------------------------
# Gating
# ------------------------------------------------------------------------------------------------------------------


def npu_moe_gating_top_k(x, k, *, bias=None, input_ids=None, tid2eid=None, k_group=1, group_count=1,
                         group_select_mode=0, renorm=0, norm_type=0, out_flag=False, routed_scaling_factor=1.0,
                         eps=1e-20):
    """torch_npu.npu_moe_gating_top_k -> (y, expert_idx, out). Router scores (softmax or sigmoid), optional
    correction bias for selection, group filter, top-k; see moefuse::gating_top_k (include/moefuse/ops/gating.h).

    x [N, E] f32/bf16/f16; y [N, k] x's dtype; expert_idx [N, k] int32; out [N, E] float32 (zeros unless
    out_flag). Hash mode (input_ids, tid2eid) is not supported (ValueError)."""
    op = "gating_top_k"
    kind = kind_of(x)
    r = _core.gating_top_k(
        to_tensor(x, op, "x"), to_int(k, op, "k"), to_optional_tensor(bias, op, "bias"),
        to_optional_tensor(input_ids, op, "input_ids"), to_optional_tensor(tid2eid, op, "tid2eid"),
        to_int(k_group, op, "k_group"), to_int(group_count, op, "group_count"),
        to_int(group_select_mode, op, "group_select_mode"), to_int(renorm, op, "renorm"),
        to_int(norm_type, op, "norm_type"), to_bool(out_flag, op, "out_flag"),
        to_float(routed_scaling_factor, op, "routed_scaling_factor"), to_float(eps, op, "eps"))
    return _results(GatingTopKResult, kind, op, r)


def npu_moe_gating_top_k_softmax(x, finished=None, k=1):
    """torch_npu.npu_moe_gating_top_k_softmax -> (y, expert_idx, row_idx): softmax, then top-k; see
    moefuse::gating_top_k_softmax. x [N, E] or [B, S, E]; finished: optional bool of x.shape[:-1]."""
    op = "gating_top_k_softmax"
    kind = kind_of(x)
    r = _core.gating_top_k_softmax(to_tensor(x, op, "x"), to_optional_tensor(finished, op, "finished"),
                                   to_int(k, op, "k"))
    return _results(GatingTopKSoftmaxResult, kind, op, r)


def npu_moe_gating_top_k_softmax_v2(x, *, k=1, finished=None, renorm=0, output_softmax=False):
    """torch_npu.npu_moe_gating_top_k_softmax_v2 -> (y, expert_idx, softmax_out); renorm 1 = top-k of the logits,
    then softmax over those k (Mixtral); see moefuse::gating_top_k_softmax_v2."""
    op = "gating_top_k_softmax_v2"
    kind = kind_of(x)
    r = _core.gating_top_k_softmax_v2(to_tensor(x, op, "x"), to_int(k, op, "k"),
                                      to_optional_tensor(finished, op, "finished"), to_int(renorm, op, "renorm"),
                                      to_bool(output_softmax, op, "output_softmax"))
    return _results(GatingTopKSoftmaxV2Result, kind, op, r)


# ------------------------------------------------------------------------------------------------------------------
# Routing
# ------------------------------------------------------------------------------------------------------------------


def npu_moe_init_routing(x, row_idx, expert_idx, active_num):
    """torch_npu.npu_moe_init_routing (v1) -> (expanded_x, expanded_row_idx, expanded_expert_idx): stable sort of
    the (token, slot) pairs by expert, gather of x's rows; see moefuse::init_routing (ops/init_routing.h)."""
    op = "init_routing"
    kind = kind_of(x)
    r = _core.init_routing(to_tensor(x, op, "x"), to_tensor(row_idx, op, "row_idx"),
                           to_tensor(expert_idx, op, "expert_idx"), to_int(active_num, op, "active_num"))
    return _results(InitRoutingResult, kind, op, r)


def npu_moe_init_routing_v2(x, expert_idx, *, scale=None, offset=None, active_num=-1, expert_capacity=-1,
                            expert_num=-1, drop_pad_mode=0, expert_tokens_num_type=0, expert_tokens_num_flag=False,
                            quant_mode=-1, active_expert_range=[], row_idx_type=0, x_dtype=None):
    """torch_npu.npu_moe_init_routing_v2 -> (expanded_x, expanded_row_idx, expert_token_cumsum_or_count,
    expanded_scale): dropless or drop/pad routing, counts, optional int8 quantisation; see
    moefuse::init_routing_v2. x_dtype: None or x's own dtype (torch dtype or torch_npu code)."""
    op = "init_routing_v2"
    kind = kind_of(x)
    xt = to_tensor(x, op, "x")
    x_dtype_name = _optional_dtype_name(x_dtype, op, "x_dtype", f"none or x's dtype ({xt.dtype})", ValueError)
    r = _core.init_routing_v2(
        xt, to_tensor(expert_idx, op, "expert_idx"), to_optional_tensor(scale, op, "scale"),
        to_optional_tensor(offset, op, "offset"), to_int(active_num, op, "active_num"),
        to_int(expert_capacity, op, "expert_capacity"), to_int(expert_num, op, "expert_num"),
        to_int(drop_pad_mode, op, "drop_pad_mode"), to_int(expert_tokens_num_type, op, "expert_tokens_num_type"),
        to_bool(expert_tokens_num_flag, op, "expert_tokens_num_flag"), to_int(quant_mode, op, "quant_mode"),
        to_int_list(active_expert_range, op, "active_expert_range"), to_int(row_idx_type, op, "row_idx_type"),
        x_dtype_name)
    return _results(InitRoutingV2Result, kind, op, r)


def npu_moe_finalize_routing(expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row,
                             export_for_source_row, drop_pad_mode=0, k=1):
    """torch_npu.npu_moe_finalize_routing -> out [N, H]: out[n] = skip1 + skip2 + sum_k scales[n, k] * (row + bias);
    see moefuse::finalize_routing (ops/finalize_routing.h). All optional tensors are passed explicitly (None)."""
    op = "finalize_routing"
    kind = kind_of(expanded_permuted_rows)
    out = _core.finalize_routing(
        to_tensor(expanded_permuted_rows, op, "expanded_permuted_rows"), to_optional_tensor(skip1, op, "skip1"),
        to_optional_tensor(skip2, op, "skip2"), to_optional_tensor(bias, op, "bias"),
        to_optional_tensor(scales, op, "scales"),
        to_tensor(expanded_src_to_dst_row, op, "expanded_src_to_dst_row"),
        to_optional_tensor(export_for_source_row, op, "export_for_source_row"),
        to_optional_int(drop_pad_mode, op, "drop_pad_mode", 0), to_optional_int(k, op, "k", 1))
    return from_tensor(out, kind, op, "out")


# ------------------------------------------------------------------------------------------------------------------
# Grouped matmul
# ------------------------------------------------------------------------------------------------------------------


def _describe(obj) -> str:
    return f"a list of {len(obj)}" if isinstance(obj, (list, tuple)) else type(obj).__name__


def _one_tensor(value, op: str, arg: str):
    """The tensor of a torch_npu Tensor[] argument in the MoE form: exactly one tensor."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{op}: {arg}: expected a list of tensors (torch_npu's Tensor[]), got {_describe(value)}")
    if len(value) != 1:
        raise ValueError(f"{op}: {arg}: expected a list of exactly one tensor (moefuse implements the MoE form: "
                         f"one x, one weight), got {_describe(value)}")
    return value[0]


def _optional_one_tensor(value, op: str, arg: str):
    """The tensor of an optional Tensor[]: None or [] -> None, [t] -> t."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 0:
        return None
    return to_tensor(_one_tensor(value, op, arg), op, arg)


def _int_array(value, op: str, arg: str) -> np.ndarray:
    """A Python list of ints (torch_npu's int[] overload; nested for key-value rows) as an int64 array."""
    try:
        a = np.asarray(value)
    except ValueError:
        raise ValueError(f"{op}: {arg}: expected a list of ints (or of equal-length lists of ints), got a ragged "
                         "list") from None
    if a.size and not (np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_):
        raise TypeError(f"{op}: {arg}: expected a list of ints, got a list of {a.dtype.name}")
    return a.astype(np.int64)


def _optional_dtype_name(value, op, arg, expected, error=TypeError):
    """The moefuse name of an optional dtype argument: None when not given; `error` "<op>: <arg>: expected
    <expected>, got ..." when it is no dtype moefuse knows."""
    if value is None:
        return None
    name = dtype_to_moefuse(value)
    if name is None:
        raise error(f"{op}: {arg}: expected {expected}, got {describe_dtype_arg(value)}")
    return name


def _check_dtype_arg(value, tensor, op: str, arg: str, tensor_name: str) -> None:
    """torch_npu's x_dtype / weight_dtype / ... reinterpret storage (int4, fp8, hifloat8): moefuse has no such
    formats, so they must be None or the tensor's own dtype."""
    if value is None:
        return
    if tensor is None:
        raise ValueError(f"{op}: {arg}: expected None ({tensor_name} is not given), got {describe_dtype_arg(value)}")
    if dtype_to_moefuse(value) != tensor.dtype:
        raise ValueError(f"{op}: {arg}: expected none or {tensor_name}'s dtype ({tensor.dtype}), got "
                         f"{describe_dtype_arg(value)}")


def npu_grouped_matmul(x, weight, *, bias=None, scale=None, offset=None, antiquant_scale=None,
                       antiquant_offset=None, per_token_scale=None, group_list=None, activation_input=None,
                       activation_quant_scale=None, activation_quant_offset=None, split_item=0, group_type=None,
                       group_list_type=0, act_type=0, tuning_config=None, output_dtype=None, x_dtype=None,
                       weight_dtype=None, scale_dtype=None, per_token_scale_dtype=None) -> List[Any]:
    """torch_npu.npu_grouped_matmul in its MoE form -> [y]: x = [X [M, K]], weight = [W [E, K, N]] (or the
    Hugging Face storage [E, N, K] viewed as .transpose(1, 2), read in place), rows grouped by group_list with
    group_type=0; see moefuse::grouped_matmul (ops/grouped_matmul.h) for the float, int8 -> int32 and per-channel /
    per-token dequantising paths. The list arguments (bias, scale, ...) are None, [] or a list of one tensor;
    group_list is a tensor, a list of ints (the .List overload; a list of [id, count] pairs for
    group_list_type=2) or None. activation_input,
    activation_quant_scale and activation_quant_offset are not supported (must be None)."""
    op = "grouped_matmul"
    x0 = _one_tensor(x, op, "x")
    w0 = _one_tensor(weight, op, "weight")
    kind = kind_of(x0)
    xt = to_tensor(x0, op, "x")
    wt = to_tensor(w0, op, "weight")
    bias_t = _optional_one_tensor(bias, op, "bias")
    scale_t = _optional_one_tensor(scale, op, "scale")
    offset_t = _optional_one_tensor(offset, op, "offset")
    aq_scale_t = _optional_one_tensor(antiquant_scale, op, "antiquant_scale")
    aq_offset_t = _optional_one_tensor(antiquant_offset, op, "antiquant_offset")
    pts_t = _optional_one_tensor(per_token_scale, op, "per_token_scale")
    for name, value in (("activation_input", activation_input), ("activation_quant_scale", activation_quant_scale),
                        ("activation_quant_offset", activation_quant_offset)):
        if value is not None and not (isinstance(value, (list, tuple)) and len(value) == 0):
            raise ValueError(f"{op}: {name}: expected None (not supported), got {_describe(value)}")
    if group_list is None:
        gl = None
    elif isinstance(group_list, (list, tuple)):
        gl = to_tensor(_int_array(group_list, op, "group_list"), op, "group_list")
    else:
        gl = to_tensor(group_list, op, "group_list")
    out_name = _optional_dtype_name(output_dtype, op, "output_dtype", f"a dtype moefuse supports ({SUPPORTED})")
    _check_dtype_arg(x_dtype, xt, op, "x_dtype", "x")
    _check_dtype_arg(weight_dtype, wt, op, "weight_dtype", "weight")
    _check_dtype_arg(scale_dtype, scale_t, op, "scale_dtype", "scale")
    _check_dtype_arg(per_token_scale_dtype, pts_t, op, "per_token_scale_dtype", "per_token_scale")
    y = _core.grouped_matmul(
        xt, wt, bias_t, scale_t, offset_t, aq_scale_t, aq_offset_t, pts_t, gl,
        to_optional_int(split_item, op, "split_item", 0), to_optional_int(group_type, op, "group_type"),
        to_optional_int(group_list_type, op, "group_list_type", 0), to_optional_int(act_type, op, "act_type", 0),
        [] if tuning_config is None else to_int_list(tuning_config, op, "tuning_config"), out_name)
    return [from_tensor(y, kind, op, "y")]


# ------------------------------------------------------------------------------------------------------------------
# The SwiGLU family
# ------------------------------------------------------------------------------------------------------------------


def npu_swiglu(input, dim=-1):  # noqa: A002 - torch's Python name for the `self` argument
    """torch_npu.npu_swiglu(self, dim=-1): silu(first half) * second half along dim; see moefuse::swiglu
    (ops/swiglu.h). As in torch's Python bindings, the `self` tensor is the keyword `input`; error messages call it
    x, as the C++ API does."""
    op = "swiglu"
    kind = kind_of(input)
    return from_tensor(_core.swiglu(to_tensor(input, op, "x"), to_int(dim, op, "dim")), kind, op, "out")


def npu_clipped_swiglu(x, *, group_index=None, dim=-1, alpha=1.702, limit=7.0, bias=1.0, interleaved=True):
    """torch_npu.npu_clipped_swiglu: the GPT-OSS clamped SwiGLU; see moefuse::clipped_swiglu."""
    op = "clipped_swiglu"
    kind = kind_of(x)
    out = _core.clipped_swiglu(to_tensor(x, op, "x"), to_optional_tensor(group_index, op, "group_index"),
                               to_int(dim, op, "dim"), to_float(alpha, op, "alpha"), to_float(limit, op, "limit"),
                               to_float(bias, op, "bias"), to_bool(interleaved, op, "interleaved"))
    return from_tensor(out, kind, op, "out")


def npu_dequant_swiglu_quant(x, *, weight_scale=None, activation_scale=None, bias=None, quant_scale=None,
                             quant_offset=None, group_index=None, activate_left=False, quant_mode=0, dst_type=None,
                             round_mode=None, activate_dim=None, swiglu_mode=0, clamp_limit=7.0, glu_alpha=1.702,
                             glu_bias=1.0):
    """torch_npu.npu_dequant_swiglu_quant -> (y int8 [T, H], scale float32 [T]): dequantise, SwiGLU, int8
    quantisation (static or dynamic); see moefuse::dequant_swiglu_quant. dst_type: None, torch.int8 or its code 1."""
    op = "dequant_swiglu_quant"
    kind = kind_of(x)
    r = _core.dequant_swiglu_quant(
        to_tensor(x, op, "x"), to_optional_tensor(weight_scale, op, "weight_scale"),
        to_optional_tensor(activation_scale, op, "activation_scale"), to_optional_tensor(bias, op, "bias"),
        to_optional_tensor(quant_scale, op, "quant_scale"), to_optional_tensor(quant_offset, op, "quant_offset"),
        to_optional_tensor(group_index, op, "group_index"), to_bool(activate_left, op, "activate_left"),
        to_int(quant_mode, op, "quant_mode"), None if dst_type is None else dtype_to_code(dst_type, op, "dst_type"),
        to_optional_int(round_mode, op, "round_mode"), to_optional_int(activate_dim, op, "activate_dim"),
        to_int(swiglu_mode, op, "swiglu_mode"), to_float(clamp_limit, op, "clamp_limit"),
        to_float(glu_alpha, op, "glu_alpha"), to_float(glu_bias, op, "glu_bias"))
    return _results(DequantSwigluQuantResult, kind, op, r)


def npu_swiglu_clip_quant(x, group_index, group_alpha, *, activate_left=False, quant_mode=1, clamp_mode=1):
    """npu_swiglu_clip_quant (the cann-recipes-infer custom op of the W4A8 MoE chain) -> (y int8 [T, H],
    scale float32 [T]): SwiGLU, per-group clamp, dynamic int8 quantisation; see moefuse::swiglu_clip_quant."""
    op = "swiglu_clip_quant"
    kind = kind_of(x)
    r = _core.swiglu_clip_quant(to_tensor(x, op, "x"), to_tensor(group_index, op, "group_index"),
                                to_tensor(group_alpha, op, "group_alpha"),
                                to_bool(activate_left, op, "activate_left"), to_int(quant_mode, op, "quant_mode"),
                                to_int(clamp_mode, op, "clamp_mode"))
    return _results(SwigluClipQuantResult, kind, op, r)
