"""How moefuse meets numpy, torch and DLPack: no copies in (strided views are read in place), no copies out (results
are the C++ output buffers), results of the main input's kind, bf16 through torch and ml_dtypes, torch_npu's
signatures, and the GIL released while an operator computes."""

import gc
import inspect
import threading
import time

import numpy as np
import pytest

import moefuse
import moefuse.torch_npu
from moefuse import _core, _tensors
from mf_testutil import as_f32, assert_bitwise, assert_exact, grid, make

F32 = np.float32

OPS = [
    "npu_moe_gating_top_k", "npu_moe_gating_top_k_softmax", "npu_moe_gating_top_k_softmax_v2", "npu_moe_init_routing",
    "npu_moe_init_routing_v2", "npu_grouped_matmul", "npu_swiglu", "npu_clipped_swiglu", "npu_dequant_swiglu_quant",
    "npu_swiglu_clip_quant", "npu_moe_finalize_routing",
]


def data_ptr(a):
    return a.data_ptr() if hasattr(a, "data_ptr") else a.__array_interface__["data"][0]


# ------------------------------------------------------------------------------------------------------------------
# torch_npu's names and signatures
# ------------------------------------------------------------------------------------------------------------------

P, K = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
REQ = inspect.Parameter.empty
SIGNATURES = {
    "npu_moe_gating_top_k": [("x", P, REQ), ("k", P, REQ), ("bias", K, None), ("input_ids", K, None),
                             ("tid2eid", K, None), ("k_group", K, 1), ("group_count", K, 1),
                             ("group_select_mode", K, 0), ("renorm", K, 0), ("norm_type", K, 0), ("out_flag", K, False),
                             ("routed_scaling_factor", K, 1.0), ("eps", K, 1e-20)],
    "npu_moe_gating_top_k_softmax": [("x", P, REQ), ("finished", P, None), ("k", P, 1)],
    "npu_moe_gating_top_k_softmax_v2": [("x", P, REQ), ("k", K, 1), ("finished", K, None), ("renorm", K, 0),
                                        ("output_softmax", K, False)],
    "npu_moe_init_routing": [("x", P, REQ), ("row_idx", P, REQ), ("expert_idx", P, REQ), ("active_num", P, REQ)],
    "npu_moe_init_routing_v2": [("x", P, REQ), ("expert_idx", P, REQ), ("scale", K, None), ("offset", K, None),
                                ("active_num", K, -1), ("expert_capacity", K, -1), ("expert_num", K, -1),
                                ("drop_pad_mode", K, 0), ("expert_tokens_num_type", K, 0),
                                ("expert_tokens_num_flag", K, False), ("quant_mode", K, -1),
                                ("active_expert_range", K, []), ("row_idx_type", K, 0), ("x_dtype", K, None)],
    "npu_grouped_matmul": [("x", P, REQ), ("weight", P, REQ)] + [
        (n, K, None) for n in ("bias", "scale", "offset", "antiquant_scale", "antiquant_offset", "per_token_scale",
                               "group_list", "activation_input", "activation_quant_scale",
                               "activation_quant_offset")] + [
        ("split_item", K, 0), ("group_type", K, None), ("group_list_type", K, 0), ("act_type", K, 0),
        ("tuning_config", K, None), ("output_dtype", K, None), ("x_dtype", K, None), ("weight_dtype", K, None),
        ("scale_dtype", K, None), ("per_token_scale_dtype", K, None)],
    "npu_swiglu": [("input", P, REQ), ("dim", P, -1)],
    "npu_clipped_swiglu": [("x", P, REQ), ("group_index", K, None), ("dim", K, -1), ("alpha", K, 1.702),
                           ("limit", K, 7.0), ("bias", K, 1.0), ("interleaved", K, True)],
    "npu_dequant_swiglu_quant": [("x", P, REQ)] + [
        (n, K, None) for n in ("weight_scale", "activation_scale", "bias", "quant_scale", "quant_offset",
                               "group_index")] + [
        ("activate_left", K, False), ("quant_mode", K, 0), ("dst_type", K, None), ("round_mode", K, None),
        ("activate_dim", K, None), ("swiglu_mode", K, 0), ("clamp_limit", K, 7.0), ("glu_alpha", K, 1.702),
        ("glu_bias", K, 1.0)],
    "npu_swiglu_clip_quant": [("x", P, REQ), ("group_index", P, REQ), ("group_alpha", P, REQ),
                              ("activate_left", K, False), ("quant_mode", K, 1), ("clamp_mode", K, 1)],
    "npu_moe_finalize_routing": [(n, P, REQ) for n in ("expanded_permuted_rows", "skip1", "skip2", "bias", "scales",
                                                        "expanded_src_to_dst_row", "export_for_source_row")] + [
        ("drop_pad_mode", P, 0), ("k", P, 1)],
}


@pytest.mark.parametrize("name", OPS)
def test_signature_is_torch_npus(name):
    params = inspect.signature(getattr(moefuse, name)).parameters
    got = [(p.name, p.kind, p.default) for p in params.values()]
    assert got == SIGNATURES[name]


def test_torch_npu_module_exposes_exactly_the_operators():
    public = {n for n in dir(moefuse.torch_npu) if not n.startswith("_")}
    assert public == set(OPS)
    assert set(moefuse.torch_npu.__all__) == set(OPS)
    for name in OPS:
        assert getattr(moefuse.torch_npu, name) is getattr(moefuse, name)


# ------------------------------------------------------------------------------------------------------------------
# No copies in, no copies out
# ------------------------------------------------------------------------------------------------------------------


def test_numpy_views_are_read_in_place(rng):
    base = grid(rng, (10, 12))
    for view in (base, base[::2, 1:9], base.T, base[::-1], np.broadcast_to(base[0], (5, 12))):
        t = _tensors.to_tensor(view, "test", "x")
        assert t.data_ptr == data_ptr(view)
        assert t.strides == tuple(s // view.itemsize for s in view.strides)
        assert t.shape == view.shape and t.readonly
    # and operators give on a view what they give on a contiguous copy
    for view in (base[::2, 2:10], base[::-1], np.broadcast_to(base[0], (3, 12))):
        assert_bitwise(moefuse.npu_swiglu(view), moefuse.npu_swiglu(np.ascontiguousarray(view)))


def test_numpy_layouts_no_view_can_express_are_copied(rng):
    x = grid(rng, (3, 8))
    unaligned = np.frombuffer(bytearray(x.nbytes + 1), np.uint8)[1:].view(F32).reshape(3, 8)
    unaligned[...] = x
    big_endian = x.astype(">f4")
    assert not unaligned.flags.aligned
    for a in (unaligned, big_endian):
        assert_bitwise(moefuse.npu_swiglu(a), moefuse.npu_swiglu(x))


def test_torch_views_are_read_in_place(rng):
    torch = pytest.importorskip("torch")
    base = torch.from_numpy(grid(rng, (10, 12)))
    for view in (base, base[::2, 1:9], base.t(), base[3:], base[0].expand(4, 12)):
        t = _tensors.to_tensor(view, "test", "x")
        assert t.data_ptr == view.data_ptr()
        assert t.strides == view.stride()
    bf = base.to(torch.bfloat16).t()
    t = _tensors.to_tensor(bf, "test", "x")
    assert t.dtype == "bf16" and t.data_ptr == bf.data_ptr() and t.strides == bf.stride()
    for view in (base[::2, 2:10], base.t(), base[0].expand(3, 12)):
        assert torch.equal(moefuse.npu_swiglu(view), moefuse.npu_swiglu(view.contiguous()))


def test_results_share_memory_with_the_cpp_output_numpy(rng):
    x = grid(rng, (4, 6))
    pt = _core.swiglu(_tensors.to_tensor(x, "swiglu", "x"), -1)
    assert pt.owns_storage and not pt.readonly
    arr = _tensors.from_tensor(pt, "numpy", "swiglu", "out")
    assert data_ptr(arr) == pt.data_ptr and not arr.flags.owndata and arr.flags.writeable
    expected = arr.copy()
    del pt
    gc.collect()
    assert_bitwise(arr, expected)  # the array keeps the C++ buffer alive
    # the public functions hand out the same kind of array: not owning, 64-byte aligned moefuse storage
    y = moefuse.npu_swiglu(x)
    assert not y.flags.owndata and data_ptr(y) % 64 == 0


def test_results_share_memory_with_the_cpp_output_torch(rng):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(grid(rng, (4, 6)))
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        pt = _core.swiglu(_tensors.to_tensor(x.to(dtype), "swiglu", "x"), -1)
        t = _tensors.from_tensor(pt, "torch", "swiglu", "out")
        assert isinstance(t, torch.Tensor) and t.dtype == dtype
        assert t.data_ptr() == pt.data_ptr
        expected = t.clone()
        del pt
        gc.collect()
        assert torch.equal(t, expected)
    y, idx, out = moefuse.npu_moe_gating_top_k(x, 2, out_flag=True)
    assert all(isinstance(v, torch.Tensor) and v.data_ptr() % 64 == 0 for v in (y, idx, out))


def test_results_are_the_main_inputs_kind(rng):
    x = grid(rng, (3, 8))
    for r in (moefuse.npu_moe_gating_top_k(x, 2), moefuse.npu_moe_gating_top_k_softmax(x, None, 2)):
        assert all(type(v) is np.ndarray for v in r)
    torch = pytest.importorskip("torch")
    tx = torch.from_numpy(x)
    # a numpy side input does not change the kind: the main input decides
    r = moefuse.npu_moe_gating_top_k(tx, 2, bias=np.zeros(8, np.float32))
    assert all(isinstance(v, torch.Tensor) for v in r)
    r = moefuse.npu_moe_init_routing_v2(tx, np.zeros((3, 2), np.int32), expert_num=2)
    assert all(isinstance(v, torch.Tensor) for v in r)
    (y,) = moefuse.npu_grouped_matmul([tx], [torch.ones(1, 8, 4)], group_list=[3], group_type=0)
    assert isinstance(y, torch.Tensor)


def test_any_dlpack_producer_is_accepted_and_gives_numpy(rng):
    x = grid(rng, (3, 8))

    class Producer:  # only the DLPack protocol, nothing numpy- or torch-specific
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, stream=None):
            return self.a.__dlpack__()

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    y = moefuse.npu_swiglu(Producer(x))
    assert type(y) is np.ndarray
    assert_bitwise(y, moefuse.npu_swiglu(x))


# ------------------------------------------------------------------------------------------------------------------
# bf16
# ------------------------------------------------------------------------------------------------------------------

SPECIAL_BF16_BITS = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x3F80, 0xC2F7], np.uint16)


def test_bf16_round_trips_through_torch_bit_for_bit(rng):
    torch = pytest.importorskip("torch")
    bits = np.concatenate([SPECIAL_BF16_BITS, rng.integers(0, 2**16, 8).astype(np.uint16)]).view(np.int16)
    x = torch.from_numpy(bits.reshape(4, 4).copy()).view(torch.bfloat16)  # NaN payload, -0, inf, subnormal, ...
    expert_idx = torch.tensor([[1], [0], [1], [0]], dtype=torch.int32)
    ex, row_idx, _, _ = moefuse.npu_moe_init_routing_v2(x, expert_idx, expert_num=2)  # rows are copied
    assert ex.dtype == torch.bfloat16
    expected = x.view(torch.int16)[[1, 3, 0, 2]]
    assert torch.equal(ex.view(torch.int16), expected)
    assert row_idx.tolist() == [2, 0, 3, 1]


def test_bf16_torch_and_ml_dtypes_agree(rng):
    torch = pytest.importorskip("torch")
    values = grid(rng, (5, 8))
    t = torch.from_numpy(values).to(torch.bfloat16)
    y_t = moefuse.npu_swiglu(t)
    assert y_t.dtype == torch.bfloat16
    y_n = moefuse.npu_swiglu(make(values, "bf16"))  # skips without ml_dtypes
    assert y_n.dtype == _tensors.BF16_NUMPY
    assert_exact(y_t.view(torch.int16).numpy(), y_n.view(np.int16))
    g_t = moefuse.npu_moe_gating_top_k(t, 3, norm_type=1)
    g_n = moefuse.npu_moe_gating_top_k(make(values, "bf16"), 3, norm_type=1)
    assert g_t[0].dtype == torch.bfloat16
    assert_exact(g_t[0].view(torch.int16).numpy(), g_n[0].view(np.int16))
    assert_exact(g_t[1].numpy(), g_n[1])


def test_bf16_numpy_without_ml_dtypes_raises_type_error(monkeypatch, rng):
    x = rng.integers(-5, 5, (4, 8)).astype(np.int8)
    w = rng.integers(-5, 5, (1, 8, 3)).astype(np.int8)
    scale = np.full((1, 3), 0.5, np.float32)
    monkeypatch.setattr(_tensors, "BF16_NUMPY", None)
    with pytest.raises(TypeError, match="grouped_matmul: y: a bf16 result cannot be returned as a numpy array "
                                        "without the ml_dtypes package"):
        moefuse.npu_grouped_matmul([x], [w], scale=[scale], group_list=[4], group_type=0, output_dtype="bfloat16")


def test_dtype_arguments_take_torch_dtypes_names_and_codes(rng):
    x = rng.integers(-5, 5, (4, 8)).astype(np.int8)
    w = rng.integers(-5, 5, (1, 8, 3)).astype(np.int8)
    scale = np.full((1, 3), 0.5, np.float32)
    gmm = dict(scale=[scale], group_list=[4], group_type=0)
    ref = as_f32(moefuse.npu_grouped_matmul([x], [w], output_dtype=np.float16, **gmm)[0])
    for spec in ("float16", "f16", 5, np.dtype(np.float16)):
        assert_bitwise(moefuse.npu_grouped_matmul([x], [w], output_dtype=spec, **gmm)[0], ref)
    (y32,) = moefuse.npu_grouped_matmul([x], [w], output_dtype=3, group_list=[4], group_type=0)
    assert y32.dtype == np.int32
    xs = rng.integers(-100, 100, (2, 8)).astype(np.int32)
    a = moefuse.npu_dequant_swiglu_quant(xs, weight_scale=np.ones(8, np.float32), quant_mode=1, dst_type=1)
    torch = pytest.importorskip("torch")
    for spec in (torch.int8, "int8"):
        b = moefuse.npu_dequant_swiglu_quant(xs, weight_scale=np.ones(8, np.float32), quant_mode=1, dst_type=spec)
        assert_exact(a.y, b.y)
    (yb,) = moefuse.npu_grouped_matmul([torch.from_numpy(x)], [torch.from_numpy(w)], output_dtype=torch.bfloat16,
                                       **gmm)
    assert yb.dtype == torch.bfloat16
    xr = torch.from_numpy(grid(rng, (3, 4))).to(torch.bfloat16)
    for spec in (torch.bfloat16, 15, "bfloat16"):
        moefuse.npu_moe_init_routing_v2(xr, torch.zeros(3, 1, dtype=torch.int32), x_dtype=spec)


def test_torch_inputs_that_require_grad(rng):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(grid(rng, (3, 8))).requires_grad_()
    y = moefuse.npu_swiglu(x)
    assert not y.requires_grad
    assert torch.equal(y, moefuse.npu_swiglu(x.detach()))


# ------------------------------------------------------------------------------------------------------------------
# The GIL
# ------------------------------------------------------------------------------------------------------------------


def test_the_gil_is_released_while_an_operator_computes(rng):
    # Deterministic: the binding records whether the GIL was free while the operator ran (no timing involved).
    from moefuse import _core

    x = rng.normal(size=(4, 8)).astype(np.float32)
    w = rng.normal(size=(1, 8, 6)).astype(np.float32)
    _core._last_call_released_gil()  # reset
    moefuse.npu_grouped_matmul([x], [w], group_list=[4], group_type=0)
    assert _core._last_call_released_gil()
    moefuse.npu_swiglu(x)
    assert _core._last_call_released_gil()
    logits = rng.normal(size=(3, 8)).astype(np.float32)
    moefuse.npu_moe_gating_top_k(logits, 2)
    assert _core._last_call_released_gil()
    assert not _core._last_call_released_gil()  # reading resets it
