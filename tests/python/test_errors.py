"""Every kind of error becomes the documented Python exception with a message that names the operator and the
argument: ValueError for bad values and shapes, TypeError for dtypes (and for arguments of the wrong Python type),
OSError for files, MemoryError when memory runs out (moefuse::IoError / ResourceError); the C++ message is kept."""

import re

import numpy as np
import pytest

import moefuse
from moefuse import _core, _tensors

F = np.float32
X = np.zeros((4, 8), F)
I32 = np.int32


def idx(shape, value=0, dtype=I32):
    return np.full(shape, value, dtype)


GMM_W = np.zeros((2, 8, 3), F)

# (call, exception type, message start "op: argument: ...")
CASES = [
    # C++ validation, one or more per operator
    (lambda: moefuse.npu_moe_gating_top_k(X, 9), ValueError, "gating_top_k: k: expected 1 <= k <= E (8), got 9"),
    (lambda: moefuse.npu_moe_gating_top_k(X.astype(I32), 2), TypeError, "gating_top_k: x: expected dtype"),
    (lambda: moefuse.npu_moe_gating_top_k(X, 2, bias=np.zeros(7, F)), ValueError, "gating_top_k: bias: expected shape"),
    (lambda: moefuse.npu_moe_gating_top_k(X, 2, input_ids=idx(4), tid2eid=idx((8, 2))), ValueError,
     "gating_top_k: input_ids: expected none (hash mode is not supported)"),
    (lambda: moefuse.npu_moe_gating_top_k(X, 2, norm_type=2), ValueError, "gating_top_k: norm_type:"),
    (lambda: moefuse.npu_moe_gating_top_k(X, 2, group_count=3), ValueError, "gating_top_k: group_count:"),
    (lambda: moefuse.npu_moe_gating_top_k_softmax(X, idx(4), 2), TypeError, "gating_top_k_softmax: finished:"),
    (lambda: moefuse.npu_moe_gating_top_k_softmax(X, None, 9), ValueError, "gating_top_k_softmax: k:"),
    (lambda: moefuse.npu_moe_gating_top_k_softmax_v2(X, k=2, renorm=3), ValueError, "gating_top_k_softmax_v2: renorm:"),
    (lambda: moefuse.npu_moe_init_routing(X, idx((4, 2)), idx((4, 2)), 4), ValueError,
     "init_routing: row_idx: expected a permutation"),
    (lambda: moefuse.npu_moe_init_routing(X, np.arange(8, dtype=I32).reshape(4, 2), idx((4, 2), 0, np.int64), 4),
     TypeError, "init_routing: expert_idx: expected dtype i32, got i64"),
    (lambda: moefuse.npu_moe_init_routing_v2(X, idx((4, 2)), quant_mode=5), ValueError, "init_routing_v2: quant_mode:"),
    (lambda: moefuse.npu_moe_init_routing_v2(X, idx((4, 2), 9), expert_num=4), ValueError,
     "init_routing_v2: expert_idx: expected expert ids in [0, 4)"),
    (lambda: moefuse.npu_moe_init_routing_v2(X, idx((4, 2)), x_dtype=np.float16), ValueError,
     "init_routing_v2: x_dtype: expected none or x's dtype (f32), got f16"),
    (lambda: moefuse.npu_moe_init_routing_v2(X, idx((4, 2)), drop_pad_mode=1, expert_num=2, expert_capacity=0),
     ValueError, "init_routing_v2: expert_capacity:"),
    (lambda: moefuse.npu_grouped_matmul([X], [np.zeros((2, 7, 3), F)], group_list=[4, 4], group_type=0), ValueError,
     "grouped_matmul: weight: expected K"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W.astype(np.float16)], group_list=[4, 4], group_type=0), TypeError,
     "grouped_matmul: weight: expected dtype f32"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[4, 3], group_type=0), ValueError,
     "grouped_matmul: group_list[1]:"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[4, 4], group_type=0, act_type=3), ValueError,
     "grouped_matmul: act_type:"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[4, 4], group_type=2), ValueError,
     "grouped_matmul: group_type:"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[4, 4], group_type=0, output_dtype=np.int32),
     TypeError, "grouped_matmul: output_dtype: expected none or f32"),
    (lambda: moefuse.npu_swiglu(np.zeros((4, 7), F)), ValueError, "swiglu: x: expected an even size"),
    (lambda: moefuse.npu_swiglu(X.astype(I32)), TypeError, "swiglu: x: expected dtype"),
    (lambda: moefuse.npu_swiglu(X, dim=2), ValueError, "swiglu: dim:"),
    (lambda: moefuse.npu_clipped_swiglu(X, limit=-1.0), ValueError, "clipped_swiglu: limit:"),
    (lambda: moefuse.npu_clipped_swiglu(X, group_index=np.array([-1], np.int64)), ValueError,
     "clipped_swiglu: group_index[0]:"),
    (lambda: moefuse.npu_dequant_swiglu_quant(X.astype(I32)), ValueError, "dequant_swiglu_quant: weight_scale:"),
    (lambda: moefuse.npu_dequant_swiglu_quant(X, quant_mode=1, dst_type=2), ValueError,
     "dequant_swiglu_quant: dst_type:"),
    (lambda: moefuse.npu_dequant_swiglu_quant(X, quant_mode=3), ValueError, "dequant_swiglu_quant: quant_mode:"),
    (lambda: moefuse.npu_dequant_swiglu_quant(X, quant_mode=1, quant_scale=np.zeros(4, I32)), TypeError,
     "dequant_swiglu_quant: quant_scale:"),
    (lambda: moefuse.npu_swiglu_clip_quant(X, np.array([5], np.int64), np.ones(1, F)), ValueError,
     "swiglu_clip_quant: group_index:"),
    (lambda: moefuse.npu_swiglu_clip_quant(X, np.array([4], np.int64), np.ones(1, np.float16)), TypeError,
     "swiglu_clip_quant: group_alpha:"),
    (lambda: moefuse.npu_swiglu_clip_quant(X, np.array([4], np.int64), np.ones(1, F), clamp_mode=0), ValueError,
     "swiglu_clip_quant: clamp_mode:"),
    (lambda: moefuse.npu_moe_finalize_routing(X, None, None, None, None, np.arange(4, dtype=I32), None, 4, 1),
     ValueError, "finalize_routing: drop_pad_mode:"),
    (lambda: moefuse.npu_moe_finalize_routing(X, None, X, None, None, np.arange(4, dtype=I32), None, 0, 1),
     ValueError, "finalize_routing: skip2:"),
    (lambda: moefuse.npu_moe_finalize_routing(X, None, None, None, None, np.array([0, 1, 2, 9], I32), None),
     ValueError, "finalize_routing: expanded_src_to_dst_row:"),
    (lambda: moefuse.npu_moe_finalize_routing(X, X.astype(np.float16), None, None, None, np.arange(4, dtype=I32),
                                              None), TypeError, "finalize_routing: skip1:"),
    # the Python layer: tensors
    (lambda: moefuse.npu_swiglu([[1.0, 2.0]]), TypeError,
     "swiglu: x: expected a numpy array or a DLPack-capable CPU tensor, got list"),
    (lambda: moefuse.npu_moe_gating_top_k(X.astype(np.float64), 2), TypeError,
     "gating_top_k: x: expected a tensor of dtype f32, f16, bf16, i8, u8, i32, i64 or bool, got numpy float64"),
    (lambda: moefuse.npu_moe_init_routing(None, idx((4, 2)), idx((4, 2)), 4), ValueError,
     "init_routing: x: expected a tensor, got None"),
    (lambda: moefuse.npu_swiglu(np.zeros((1,) * 9, F)), ValueError, "swiglu: x: expected at most 8 dimensions"),
    (lambda: moefuse.npu_swiglu(memoryview(bytearray(20))[1:17].cast("f")), ValueError,
     "swiglu: x: expected data aligned to its element size (4 bytes), got an unaligned array"),
    # the Python layer: scalars
    (lambda: moefuse.npu_moe_gating_top_k(X, 2.0), TypeError, "gating_top_k: k: expected an int, got float"),
    (lambda: moefuse.npu_moe_gating_top_k(X, 2, out_flag=1), TypeError, "gating_top_k: out_flag: expected a bool"),
    (lambda: moefuse.npu_moe_gating_top_k(X, 2, eps="small"), TypeError, "gating_top_k: eps: expected a float"),
    (lambda: moefuse.npu_moe_gating_top_k(X, 2 ** 64), ValueError, "gating_top_k: k: expected an int64 value"),
    (lambda: moefuse.npu_moe_init_routing_v2(X, idx((4, 2)), active_expert_range=3), TypeError,
     "init_routing_v2: active_expert_range: expected a list of ints"),
    (lambda: moefuse.npu_moe_init_routing_v2(X, idx((4, 2)), x_dtype=290), ValueError,
     "init_routing_v2: x_dtype: expected none or x's dtype (f32), got 290"),
    # the Python layer: grouped_matmul's lists and dtype arguments
    (lambda: moefuse.npu_grouped_matmul(X, [GMM_W], group_list=[8], group_type=0), TypeError,
     "grouped_matmul: x: expected a list of tensors"),
    (lambda: moefuse.npu_grouped_matmul([X, X], [GMM_W], group_list=[8], group_type=0), ValueError,
     "grouped_matmul: x: expected a list of exactly one tensor"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W, GMM_W], group_list=[8], group_type=0), ValueError,
     "grouped_matmul: weight: expected a list of exactly one tensor"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], bias=[None, None], group_list=[8], group_type=0), ValueError,
     "grouped_matmul: bias: expected a list of exactly one tensor"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], activation_input=[X], group_list=[8], group_type=0),
     ValueError, "grouped_matmul: activation_input: expected None"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[4.0, 8.0], group_type=0), TypeError,
     "grouped_matmul: group_list: expected a list of ints"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[[1, 2], [3]], group_type=0), ValueError,
     "grouped_matmul: group_list: expected a list of ints"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[8], group_type=0, output_dtype=np.float64),
     TypeError, "grouped_matmul: output_dtype: expected a dtype moefuse supports"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[8], group_type=0, x_dtype=np.float16), ValueError,
     "grouped_matmul: x_dtype: expected none or x's dtype (f32), got f16"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[8], group_type=0, weight_dtype=3), ValueError,
     "grouped_matmul: weight_dtype: expected none or weight's dtype (f32), got i32"),
    (lambda: moefuse.npu_grouped_matmul([X], [GMM_W], group_list=[8], group_type=0, scale_dtype=6), ValueError,
     "grouped_matmul: scale_dtype: expected None (scale is not given)"),
    (lambda: moefuse.npu_dequant_swiglu_quant(X, quant_mode=1, dst_type="int8x"), TypeError,
     "dequant_swiglu_quant: dst_type: expected a dtype"),
]


@pytest.mark.parametrize("call,exc,message", CASES, ids=[c[2].split(":")[0] + ":" + c[2].split(":")[1].strip()
                                                         for c in CASES])
def test_error(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc  # not a subclass standing in for it
    assert str(info.value).startswith(message), str(info.value)


def test_failed_calls_leave_inputs_untouched():
    x = np.arange(32, dtype=F).reshape(4, 8)
    before = x.copy()
    with pytest.raises(ValueError):
        moefuse.npu_moe_gating_top_k(x, 9)
    assert np.array_equal(x, before)


@pytest.mark.parametrize("kind,exc", [("ValueError", ValueError), ("TypeError", TypeError), ("IoError", OSError),
                                      ("ResourceError", MemoryError), ("Error", RuntimeError)])
def test_every_error_class_maps_to_its_python_exception(kind, exc):
    with pytest.raises(exc, match=re.escape("io: path: expected a readable file, got /nope")) as info:
        _core._throw(kind, "io: path: expected a readable file, got /nope")
    assert type(info.value) is exc


def test_out_of_memory_is_memory_error():
    # A zero-stride view of 2^48 rows costs nothing; its 2^50-byte result cannot be allocated on any machine.
    x = np.broadcast_to(np.zeros(2, F), (2 ** 48, 2))
    with pytest.raises(MemoryError, match="allocation failed"):
        moefuse.npu_swiglu(x)


def test_bf16_numpy_needs_ml_dtypes(monkeypatch):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.zeros((2, 4), ml_dtypes.bfloat16)
    monkeypatch.setattr(_tensors, "BF16_NUMPY", None)
    with pytest.raises(TypeError, match="swiglu: x: expected a tensor of dtype .*, got numpy bfloat16"):
        moefuse.npu_swiglu(x)


def test_torch_tensor_errors():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="gating_top_k: x: expected a tensor of dtype .*, got torch.float64"):
        moefuse.npu_moe_gating_top_k(torch.zeros(2, 4, dtype=torch.float64), 1)
    with pytest.raises(ValueError, match="swiglu: x: expected a CPU tensor, got one on device meta"):
        moefuse.npu_swiglu(torch.empty(2, 4, device="meta"))
    with pytest.raises(ValueError, match="swiglu: x: expected a strided"):
        moefuse.npu_swiglu(torch.zeros(2, 4).to_sparse())
    with pytest.raises(TypeError, match="gating_top_k: k: expected an int, got float"):
        moefuse.npu_moe_gating_top_k(torch.zeros(2, 4), 1.5)
    # a one-element integer tensor is an int, as torch's argument parser takes it
    y, _, _ = moefuse.npu_moe_gating_top_k(torch.zeros(2, 4), torch.tensor(2))
    assert y.shape == (2, 2)
