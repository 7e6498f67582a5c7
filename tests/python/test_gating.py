"""npu_moe_gating_top_k, npu_moe_gating_top_k_softmax and _v2 against numpy oracles written from the torch_npu semantics and
the formulas of include/moefuse/ops/gating.h. Every step is one float32 operation and the exponential is C's expf,
so weights are compared bit for bit and indices exactly."""

import numpy as np
import pytest

import moefuse
from mf_testutil import FLOAT_DTYPES, as_f32, assert_bitwise, assert_exact, expf, f32, grid, make, round_to


def topk_desc(v, candidates, k):
    """The k candidates with the largest v, larger first, ties -> lower index (candidates ascending)."""
    candidates = np.asarray(candidates)
    order = np.argsort(-v[candidates], kind="stable")
    return candidates[order[:k]]


def softmax_rows(s):
    """m = max, q = expf(s - m), S = sequential sum, p = q * (1 / S)."""
    m = s.max(axis=-1, keepdims=True)
    q = expf(s - m)
    total = np.zeros(s.shape[:-1], np.float32)
    for e in range(s.shape[-1]):
        total = total + q[..., e]
    inv = np.float32(1) / total
    return q * inv[..., None]


def sigmoid(s):
    return np.float32(1) / (np.float32(1) + expf(-s))


def gating_top_k_oracle(x, k, dtype, bias=None, k_group=1, group_count=1, group_select_mode=0, renorm=0,
                        norm_type=0, out_flag=False, routed_scaling_factor=1.0, eps=1e-20):
    x = f32(x)
    N, E = x.shape
    p = softmax_rows(x) if norm_type == 0 else sigmoid(x)
    b = p + f32(bias) if bias is not None else p
    G, g = group_count, E // group_count
    y = np.zeros((N, k), np.float32)
    idx = np.zeros((N, k), np.int32)
    for n in range(N):
        scores = np.zeros(G, np.float32)
        for j in range(G):
            members = topk_desc(b[n], np.arange(j * g, (j + 1) * g), 2)
            scores[j] = b[n, members[0]] if group_select_mode == 0 else b[n, members[0]] + b[n, members[1]]
        groups = topk_desc(scores, np.arange(G), k_group)
        allowed = np.sort(np.concatenate([np.arange(j * g, (j + 1) * g) for j in groups]))
        chosen = topk_desc(b[n], allowed, k)
        w = p[n, chosen]
        if norm_type == 1 or renorm == 1:
            total = np.float32(0)
            for j in range(k):
                total = np.float32(total + w[j])
            w = w / np.float32(total + np.float32(eps))
        y[n] = w * np.float32(routed_scaling_factor)
        idx[n] = chosen
    out = p if out_flag else np.zeros_like(p)
    return round_to(dtype, y), idx, out


def make_x(rng, dtype, N, E, layout):
    """x [N, E] as 0: contiguous, 1: a transposed view, 2: a column window of a wider array (no copies)."""
    if layout == 1:
        return make(grid(rng, (E, N)), dtype).T
    if layout == 2:
        return make(grid(rng, (N, E + 5)), dtype)[:, 3:3 + E]
    return make(grid(rng, (N, E)), dtype)


def check_gating(x, k, dtype, **kw):
    y, idx, out = moefuse.npu_moe_gating_top_k(x, k, **kw)
    ey, eidx, eout = gating_top_k_oracle(as_f32(x), k, dtype, **{
        key: (as_f32(v) if key == "bias" and v is not None else v) for key, v in kw.items()})
    assert idx.dtype == np.int32 and out.dtype == np.float32
    assert_exact(idx, eidx, "expert_idx")
    assert_bitwise(y, ey, "y")
    assert_bitwise(out, eout, "out")
    assert as_f32(y).shape == (x.shape[0], k)


def test_gating_top_k_hand_computed_softmax():
    x = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    y, idx, out = moefuse.npu_moe_gating_top_k(x, 2, out_flag=True)
    e = np.exp(np.arange(4) - 3.0)
    np.testing.assert_allclose(out[0], e / e.sum(), rtol=1e-6)
    assert idx.tolist() == [[3, 2]]
    np.testing.assert_allclose(y[0], (e / e.sum())[[3, 2]], rtol=1e-6)


def test_gating_top_k_sigmoid_bias_changes_selection_not_weights():
    x = np.array([[2.0, 1.0, 0.0, -1.0]], np.float32)
    bias = np.array([0.0, 0.0, 0.0, 10.0], np.float32)
    y, idx, _ = moefuse.npu_moe_gating_top_k(x, 2, bias=bias, norm_type=1)
    assert idx.tolist() == [[3, 0]]
    p = 1 / (1 + np.exp(-np.array([-1.0, 2.0])))
    np.testing.assert_allclose(y[0], p / p.sum(), rtol=1e-6)


def test_gating_top_k_ties_go_to_the_lower_index():
    for dtype in FLOAT_DTYPES:
        x = make(np.zeros((3, 8), np.float32), dtype)
        for mode in (0, 1):
            _, idx, _ = moefuse.npu_moe_gating_top_k(x, 3, k_group=2, group_count=4, group_select_mode=mode)
            assert idx.tolist() == [[0, 1, 2]] * 3


CASES = [  # E, G, k_group, group_select_mode
    (1, 1, 1, 0), (8, 1, 1, 0), (8, 4, 2, 1), (8, 8, 3, 0), (64, 16, 16, 1), (256, 8, 4, 1), (256, 1, 1, 0),
    (2048, 16, 4, 1),
]


@pytest.mark.parametrize("E,G,k_group,mode", CASES)
def test_gating_top_k_matches_oracle_over_sweeps(rng, E, G, k_group, mode):
    counter = 0
    for dtype in FLOAT_DTYPES:
        for N in (0, 1, 5):
            for k in (1, k_group * (E // G)):
                bits = counter = counter + 1
                kw = dict(k_group=k_group, group_count=G, group_select_mode=mode, norm_type=bits & 1,
                          renorm=(bits >> 2) & 1, out_flag=((bits >> 3) & 1) == 0,
                          routed_scaling_factor=1.0 if bits % 3 == 0 else 2.5)
                if (bits >> 1) & 1:
                    bias_dtype = "f32" if (bits >> 4) & 1 else dtype
                    kw["bias"] = make(grid(rng, (E,), -0.25, 0.25, 1.0 / 64), bias_dtype)
                x = make_x(rng, dtype, N, E, bits % 3)
                check_gating(x, k, dtype, **kw)


def test_gating_top_k_deepseek_v3_configuration(rng):
    # E = 256, 8 groups, 4 kept, k = 8, top-2-sum group score, sigmoid, fp32 correction bias, scaling 2.5.
    for dtype in FLOAT_DTYPES:
        x = make(grid(rng, (33, 256)), dtype)
        bias = make(grid(rng, (256,), -0.25, 0.25, 1.0 / 64), "f32")
        check_gating(x, 8, dtype, bias=bias, k_group=4, group_count=8, group_select_mode=1, norm_type=1,
                     routed_scaling_factor=2.5)


def test_gating_top_k_eps_and_zero_scaling(rng):
    x = grid(rng, (4, 16))
    check_gating(x, 4, "f32", norm_type=1, eps=0.5)
    y, _, _ = moefuse.npu_moe_gating_top_k(x, 4, norm_type=1, routed_scaling_factor=0.0)
    assert not y.any()


# ------------------------------------------------------------------------------------------------------------------
# npu_moe_gating_top_k_softmax (+ v2)
# ------------------------------------------------------------------------------------------------------------------


def softmax_oracle(x, k, dtype, finished=None):
    x = f32(x)
    lead = x.shape[:-1]
    E = x.shape[-1]
    rows = x.reshape(-1, E)
    R = rows.shape[0]
    p = softmax_rows(rows) if E else rows
    idx = np.zeros((R, k), np.int32)
    y = np.zeros((R, k), np.float32)
    for r in range(R):
        chosen = topk_desc(p[r], np.arange(E), k)
        idx[r] = chosen
        y[r] = p[r, chosen]
    if finished is not None:
        idx[np.asarray(finished).reshape(-1)] = E
    row_idx = (np.arange(k)[None, :] * R + np.arange(R)[:, None]).astype(np.int32)
    shape = lead + (k,)
    return round_to(dtype, y).reshape(shape), idx.reshape(shape), row_idx.reshape(shape), p.reshape(x.shape)


def test_gating_top_k_softmax_hand_computed():
    x = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0]], np.float32)
    y, idx, row_idx = moefuse.npu_moe_gating_top_k_softmax(x, np.array([False, True]), 2)
    assert idx.tolist() == [[1, 2], [3, 3]]
    assert row_idx.tolist() == [[0, 2], [1, 3]]
    e = np.exp([1.0, 3.0, 2.0])
    np.testing.assert_allclose(y[0], (e / e.sum())[[1, 2]], rtol=1e-6)
    np.testing.assert_allclose(y[1], [1 / 3, 1 / 3], rtol=1e-6)


@pytest.mark.parametrize("shape", [(0, 8), (1, 1), (7, 8), (2, 3, 64), (5, 300)])
def test_gating_top_k_softmax_matches_oracle(rng, shape):
    E = shape[-1]
    for dtype in FLOAT_DTYPES:
        for k in sorted({0, 1, min(3, E), E}):
            for with_finished in (False, True):
                x = make(grid(rng, shape), dtype)
                finished = rng.random(shape[:-1]) < 0.3 if with_finished else None
                y, idx, row_idx = moefuse.npu_moe_gating_top_k_softmax(x, finished, k)
                ey, eidx, erow, _ = softmax_oracle(as_f32(x), k, dtype, finished)
                assert_exact(idx, eidx, f"expert_idx {dtype} k={k}")
                assert_exact(row_idx, erow, "row_idx")
                assert_bitwise(y, ey, f"y {dtype} k={k}")


def test_gating_top_k_softmax_reads_strided_views(rng):
    base = grid(rng, (16, 40))
    x = base[::2, 3:35]  # a strided view: every other row, a column window
    y, idx, _ = moefuse.npu_moe_gating_top_k_softmax(x, k=4)
    y2, idx2, _ = moefuse.npu_moe_gating_top_k_softmax(np.ascontiguousarray(x), k=4)
    assert_exact(idx, idx2)
    assert_bitwise(y, y2)


def v2_oracle(x, k, dtype, finished, renorm, output_softmax):
    y, idx, _, p = softmax_oracle(x, k, dtype, finished)
    if renorm == 1:
        x = f32(x)
        E = x.shape[-1]
        rows = x.reshape(-1, E)
        yy = np.zeros((rows.shape[0], k), np.float32)
        ii = np.zeros((rows.shape[0], k), np.int32)
        for r in range(rows.shape[0]):
            chosen = topk_desc(rows[r], np.arange(E), k)
            ii[r] = chosen
            if k:
                yy[r] = softmax_rows(rows[r, chosen][None, :])[0]
        if finished is not None:
            ii[np.asarray(finished).reshape(-1)] = E
        y, idx = round_to(dtype, yy).reshape(y.shape), ii.reshape(idx.shape)
    softmax_out = p if (renorm == 0 and output_softmax) else np.zeros((0,), np.float32)
    return y, idx, softmax_out


@pytest.mark.parametrize("renorm,output_softmax", [(0, False), (0, True), (1, False), (1, True)])
def test_gating_top_k_softmax_v2_matches_oracle(rng, renorm, output_softmax):
    for dtype in FLOAT_DTYPES:
        for shape in ((0, 4), (6, 8), (2, 3, 33)):
            for k in (0, 1, 4):
                x = make(grid(rng, shape), dtype)
                finished = rng.random(shape[:-1]) < 0.3
                y, idx, sm = moefuse.npu_moe_gating_top_k_softmax_v2(x, k=k, finished=finished, renorm=renorm,
                                                                     output_softmax=output_softmax)
                ey, eidx, esm = v2_oracle(as_f32(x), k, dtype, finished, renorm, output_softmax)
                assert_exact(idx, eidx, "expert_idx")
                assert_bitwise(y, ey, f"y {dtype} renorm={renorm}")
                assert_bitwise(sm, esm, "softmax_out")
