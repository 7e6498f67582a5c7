"""npu_swiglu, npu_clipped_swiglu, npu_dequant_swiglu_quant and npu_swiglu_clip_quant against numpy oracles written
from the torch_npu semantics and the formulas of include/moefuse/ops/swiglu.h (float32, one operation at a time, C's expf, one
final rounding; docs/operators.md, Numerics, for the dynamic int8 quantisation)."""

import numpy as np
import pytest

import moefuse
from mf_testutil import FLOAT_DTYPES, as_f32, assert_bitwise, assert_exact, expf, f32, grid, make, round_to

ONE = np.float32(1)


def silu(a):
    return a / (ONE + expf(-a))


def dynamic_quant(o):
    """Rows of o -> (int8 q, float32 scale): s = max|o| / 127, q = rint(o / s) clamped to [-127, 127]; s = 0 -> 0."""
    amax = np.abs(o).max(axis=1) if o.shape[1] else np.zeros(o.shape[0], np.float32)
    s = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(s == 0, ONE, s)
    q = np.where(s[:, None] == 0, 0, np.clip(np.rint(o / safe[:, None]), -127, 127))
    return q.astype(np.int8), s


# ------------------------------------------------------------------------------------------------------------------
# npu_swiglu
# ------------------------------------------------------------------------------------------------------------------


def swiglu_oracle(x, dim, dtype):
    x = f32(x)
    a, b = np.split(x, 2, axis=dim)
    return round_to(dtype, silu(a) * b)


def test_swiglu_hand_computed():
    x = np.array([[1.0, -2.0, 3.0, 4.0]], np.float32)
    y = moefuse.npu_swiglu(x)
    np.testing.assert_allclose(y, [[3.0 / (1 + np.exp(-1.0)), -8.0 / (1 + np.exp(2.0))]], rtol=1e-6)


@pytest.mark.parametrize("shape,dim", [((2,), 0), ((0, 4), -1), ((1, 2), 1), ((3, 7, 10), -1), ((4, 6, 5), 1),
                                       ((6, 3), 0), ((2, 3, 4, 2), -2)])
def test_swiglu_matches_oracle(rng, shape, dim):
    for dtype in FLOAT_DTYPES:
        x = make(grid(rng, shape), dtype)
        y = moefuse.npu_swiglu(x, dim=dim)
        assert y.dtype == x.dtype
        assert_bitwise(y, swiglu_oracle(as_f32(x), dim, dtype), f"{dtype} {shape} dim={dim}")
        # torch_npu's Python name of `self` is `input`
        assert_bitwise(moefuse.npu_swiglu(input=x, dim=dim), y)


def test_swiglu_strided_view(rng):
    base = grid(rng, (8, 30))
    x = base[1::2, 4:24]
    assert_bitwise(moefuse.npu_swiglu(x), swiglu_oracle(x, -1, "f32"))


# ------------------------------------------------------------------------------------------------------------------
# npu_clipped_swiglu
# ------------------------------------------------------------------------------------------------------------------


def clipped_oracle(x, dtype, group_index=None, dim=-1, alpha=1.702, limit=7.0, bias=1.0, interleaved=True):
    x = f32(x)
    dim = dim % x.ndim
    rows = int(np.prod(x.shape[:dim]))
    cut = int(np.prod(x.shape[dim:]))
    v = x.reshape(rows, cut)
    if interleaved:
        A, B = v[:, 0::2], v[:, 1::2]
    else:
        A, B = v[:, :cut // 2], v[:, cut // 2:]
    L, al, bi = np.float32(limit), np.float32(alpha), np.float32(bias)
    a = np.minimum(A, L)
    glu = a / (expf(a * -al) + ONE)
    lin = np.maximum(np.minimum(B, L), -L) + bi
    out = glu * lin
    if group_index is not None:
        live = min(int(np.sum(group_index)), rows)
        out[live:] = 0
    shape = list(x.shape)
    shape[dim] //= 2
    return round_to(dtype, out).reshape(shape)


def test_clipped_swiglu_matches_oracle(rng):
    for dtype in FLOAT_DTYPES:
        for shape, dim in (((5, 8), -1), ((0, 6), -1), ((3, 4, 6), -1), ((4, 6, 2), 1)):
            for interleaved in (True, False):
                x = make(grid(rng, shape, -10, 10, 0.25), dtype)
                kw = dict(dim=dim, interleaved=interleaved)
                assert_bitwise(moefuse.npu_clipped_swiglu(x, **kw), clipped_oracle(as_f32(x), dtype, **kw))
                kw.update(alpha=1.0, limit=2.5, bias=-0.5, group_index=np.array([1, 0, 1], np.int64))
                assert_bitwise(moefuse.npu_clipped_swiglu(x, **kw), clipped_oracle(as_f32(x), dtype, **kw),
                               f"{dtype} {shape} {kw}")


# ------------------------------------------------------------------------------------------------------------------
# npu_dequant_swiglu_quant
# ------------------------------------------------------------------------------------------------------------------


def dsq_rows(T, group_index):
    """Scale row of each token row (-1: not covered)."""
    row_of = np.full(T, -1, np.int64)
    if group_index is None:
        row_of[:] = 0
        return row_of
    gi = np.asarray(group_index)
    r = 0
    if gi.ndim == 1:
        for g, n in enumerate(gi):
            row_of[r:r + n] = g
            r += n
    else:
        for gid, n in gi:
            if n <= 0:
                break
            row_of[r:r + n] = gid
            r += n
    return row_of


def per(t, e, grouped):
    """Row e of a per-group tensor ([E, C]) or the shared row of a 1-D / [1, C] one."""
    t = f32(as_f32(t))
    if t.ndim == 1:
        return t
    return t[e] if grouped else t[0]


def dsq_oracle(x, weight_scale=None, activation_scale=None, bias=None, quant_scale=None, quant_offset=None,
               group_index=None, activate_left=False, quant_mode=0, swiglu_mode=0, clamp_limit=7.0, glu_alpha=1.702,
               glu_bias=1.0):
    T, H2 = x.shape
    H = H2 // 2
    grouped = group_index is not None
    row_of = dsq_rows(T, group_index)
    y = np.zeros((T, H), np.int8)
    scale = np.zeros(T, np.float32)
    L, al, gb = np.float32(clamp_limit), np.float32(glu_alpha), np.float32(glu_bias)
    for r in range(T):
        e = row_of[r]
        if e < 0:
            continue
        if x.dtype == np.int32:
            acc = x[r].astype(np.int64)
            if bias is not None and bias.dtype == np.int32:
                acc = acc + (bias if bias.ndim == 1 else bias[e if grouped else 0]).astype(np.int64)
                acc = acc.astype(np.uint64).astype(np.uint32).view(np.int32)
            v = acc.astype(np.int32).astype(np.float32) * per(weight_scale, e, grouped)
            if activation_scale is not None:
                v = v * f32(activation_scale).reshape(-1)[r]
            if bias is not None and bias.dtype != np.int32:
                v = v + per(bias, e, grouped)
        else:
            v = as_f32(x[r])
        if swiglu_mode == 1:
            A, B = v[0::2], v[1::2]
        elif activate_left:
            A, B = v[:H], v[H:]
        else:
            A, B = v[H:], v[:H]
        if swiglu_mode == 0:
            o = A / (expf(-A) + ONE) * B
        elif swiglu_mode == 3:
            o = np.minimum(A / (expf(-A) + ONE), L) * np.maximum(np.minimum(B, L), -L)
        else:
            a = np.minimum(A, L)
            o = a / (expf(a * -al) + ONE) * (np.maximum(np.minimum(B, L), -L) + gb)
        qs = None if quant_scale is None else f32(as_f32(quant_scale))
        # one value per scale row: [1] / [1, 1] without group_index, [E] / [E, 1] with it
        one_per_row = qs is not None and ((grouped or qs.shape[0] == 1) if qs.ndim == 1 else qs.shape[1] == 1)
        if quant_mode == 1:
            if qs is not None:
                o = o * (qs.reshape(-1)[e if grouped else 0] if one_per_row else per(qs, e, grouped))
            q, s = dynamic_quant(o[None, :])
            y[r], scale[r] = q[0], s[0]
        else:
            if one_per_row:
                o = o * (ONE / qs.reshape(-1)[e if grouped else 0])
                if quant_offset is not None:
                    o = o + f32(as_f32(quant_offset)).reshape(-1)[e if grouped else 0]
            else:
                o = o / per(qs, e, grouped)
                if quant_offset is not None:
                    o = o + per(quant_offset, e, grouped)
            y[r] = np.where(np.isnan(o), 0, np.clip(np.rint(o), -128, 127)).astype(np.int8)
    return y, scale


def check_dsq(x, **kw):
    y, s = moefuse.npu_dequant_swiglu_quant(x, **kw)
    ey, es = dsq_oracle(x, **kw)
    assert y.dtype == np.int8 and s.dtype == np.float32
    assert_exact(y, ey, f"y {kw.keys()}")
    assert_bitwise(s, es, "scale")


def test_dequant_swiglu_quant_hand_computed_dynamic():
    x = np.array([[2, 4, 1, 1]], np.int32)
    y, s = moefuse.npu_dequant_swiglu_quant(x, weight_scale=np.full(4, 0.5, np.float32), activate_left=True,
                                            quant_mode=1)
    o = np.array([1 / (1 + np.exp(-1.0)) * 0.5, 2 / (1 + np.exp(-2.0)) * 0.5])
    np.testing.assert_allclose(s, [o.max() / 127], rtol=1e-6)
    assert y.tolist() == [np.rint(o / (o.max() / 127)).astype(int).tolist()]


@pytest.mark.parametrize("T,H", [(0, 2), (1, 1), (9, 8), (17, 33)])
def test_dequant_swiglu_quant_int32_sweep(rng, T, H):
    x = rng.integers(-3000, 3000, (T, 2 * H)).astype(np.int32)
    ws = rng.uniform(1e-3, 2e-3, 2 * H).astype(np.float32)
    act = rng.uniform(0.5, 2, T).astype(np.float32)
    for quant_mode in (0, 1):
        for mode in (0, 1, 2, 3):
            for left in (True, False):
                if mode == 1 and not left:
                    continue
                kw = dict(weight_scale=ws, activation_scale=act, activate_left=left, quant_mode=quant_mode,
                          swiglu_mode=mode, clamp_limit=3.0, glu_alpha=1.5, glu_bias=0.5)
                if quant_mode == 0:
                    kw["quant_scale"] = rng.uniform(0.01, 0.05, H).astype(np.float32)
                    kw["quant_offset"] = grid(rng, (H,), -2, 2)
                check_dsq(x, **kw)
    check_dsq(x, weight_scale=ws[None, :], activation_scale=act[:, None], bias=rng.integers(-99, 99, 2 * H).astype(
        np.int32), quant_mode=1, quant_scale=rng.uniform(0.5, 2, H).astype(np.float32))
    check_dsq(x, weight_scale=ws, bias=grid(rng, (2 * H,)), quant_mode=1)
    check_dsq(x, weight_scale=ws, quant_mode=0, quant_scale=np.array([0.02], np.float32),
              quant_offset=np.array([1.0], np.float32))


def test_dequant_swiglu_quant_float_inputs(rng):
    for dtype in FLOAT_DTYPES:
        x = make(grid(rng, (7, 12)), dtype)
        check_dsq(x, quant_mode=1)
        check_dsq(x, quant_mode=1, activate_left=True, quant_scale=make(grid(rng, (6,), 0.5, 2), dtype))
        check_dsq(x, quant_mode=0, quant_scale=np.full(6, 0.05, np.float32))


def test_dequant_swiglu_quant_groups(rng):
    T, H, G = 12, 8, 3
    x = rng.integers(-3000, 3000, (T, 2 * H)).astype(np.int32)
    ws = rng.uniform(1e-3, 2e-3, (G, 2 * H)).astype(np.float32)
    smooth = rng.uniform(0.5, 2, (G, H)).astype(np.float32)
    for gi in (np.array([3, 0, 5], np.int64), np.array([[2, 4], [0, 3], [1, 0], [2, 9]], np.int64)):
        check_dsq(x, weight_scale=ws, quant_scale=smooth, group_index=gi, activate_left=True, quant_mode=1)
        check_dsq(x, weight_scale=ws, quant_scale=np.full((G, H), 0.05, np.float32),
                  quant_offset=grid(rng, (G, H), -1, 1), group_index=gi, quant_mode=0)
        check_dsq(x, weight_scale=ws, quant_scale=np.array([0.04, 0.05, 0.06], np.float32), group_index=gi,
                  quant_mode=0)


# ------------------------------------------------------------------------------------------------------------------
# npu_swiglu_clip_quant
# ------------------------------------------------------------------------------------------------------------------


def scq_oracle(x, group_index, group_alpha, activate_left=False):
    x = as_f32(x)
    T, H2 = x.shape
    H = H2 // 2
    y = np.zeros((T, H), np.int8)
    scale = np.zeros(T, np.float32)
    r = 0
    for g, n in enumerate(np.asarray(group_index)):
        for _ in range(int(n)):
            a, b = (x[r, :H], x[r, H:]) if activate_left else (x[r, H:], x[r, :H])
            s = a / (expf(-a) + ONE) * b
            m = np.abs(s).max() if H else np.float32(0)
            t = np.float32(group_alpha[g]) * np.float32(m)
            s = np.maximum(np.minimum(s, t), -t)
            q, sc = dynamic_quant(s[None, :])
            y[r], scale[r] = q[0], sc[0]
            r += 1
    return y, scale


def test_swiglu_clip_quant_matches_oracle(rng):
    for dtype in FLOAT_DTYPES:
        for T, H in ((0, 4), (1, 1), (10, 16), (21, 5)):
            x = make(grid(rng, (T, 2 * H), -8, 8, 0.125), dtype)
            counts = rng.multinomial(max(T - 2, 0), np.ones(4) / 4).astype(np.int64)
            alpha = np.array([0.5, 1.0, 1.5, 0.0], np.float32)
            for left in (False, True):
                y, s = moefuse.npu_swiglu_clip_quant(x, counts, alpha, activate_left=left)
                ey, es = scq_oracle(x, counts, alpha, left)
                assert_exact(y, ey, f"y {dtype} T={T}")
                assert_bitwise(s, es, "scale")
