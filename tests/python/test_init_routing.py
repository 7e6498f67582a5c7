"""npu_moe_init_routing (v1) and npu_moe_init_routing_v2 against numpy oracles written from the torch_npu semantics and
docs/operators.md, Numerics (dynamic quantisation, zeros / -1 where the hardware leaves garbage, pre-drop counts)."""

import numpy as np
import pytest

import moefuse
from mf_testutil import FLOAT_DTYPES, as_f32, assert_bitwise, assert_exact, grid, make


def bits_of(a):
    """The raw bit patterns of a (numpy, incl. bf16) array, for bit-for-bit copies."""
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


# ------------------------------------------------------------------------------------------------------------------
# v1
# ------------------------------------------------------------------------------------------------------------------


def v1_oracle(x, row_idx, expert_idx, active_num):
    N, K = expert_idx.shape
    flat_e = expert_idx.reshape(-1)
    perm = np.argsort(flat_e, kind="stable")
    sorted_row = row_idx.reshape(-1)[perm]
    expanded_expert_idx = flat_e[perm].astype(np.int32)
    expanded_row_idx = np.zeros(N * K, np.int32)
    expanded_row_idx[sorted_row] = np.arange(N * K)
    A = min(active_num, N)
    expanded_x = x[sorted_row[:A * K] % N] if N else x[:0]
    return expanded_x, expanded_row_idx, expanded_expert_idx


def test_init_routing_v1_hand_computed():
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    expert_idx = np.array([[1, 0], [0, 1]], np.int32)
    row_idx = np.array([[0, 2], [1, 3]], np.int32)  # k-major: row_idx[n, k] = k*N + n
    ex, eri, eei = moefuse.npu_moe_init_routing(x, row_idx, expert_idx, 2)
    # flattened token-major (t = n*K + k): experts [1, 0, 0, 1] -> stable order t = 1, 2, 0, 3
    assert eei.tolist() == [0, 0, 1, 1]
    assert ex.tolist() == [[1, 2], [3, 4], [1, 2], [3, 4]]
    assert eri.tolist() == [2, 1, 0, 3]


@pytest.mark.parametrize("N,K,E,H", [(0, 2, 4, 3), (1, 1, 1, 4), (7, 2, 4, 5), (33, 4, 100, 8), (16, 8, 8, 1)])
def test_init_routing_v1_matches_oracle(rng, N, K, E, H):
    for dtype in FLOAT_DTYPES + [np.int8]:
        for active_num in (0, N // 2, N, N + 3):
            x = make(grid(rng, (N, H)), dtype) if dtype != np.int8 else rng.integers(-128, 128, (N, H)).astype(np.int8)
            expert_idx = rng.integers(0, E, (N, K)).astype(np.int32)  # many ties: the order must be stable
            row_idx = (np.arange(K)[None, :] * N + np.arange(N)[:, None]).astype(np.int32)
            ex, eri, eei = moefuse.npu_moe_init_routing(x, row_idx, expert_idx, active_num)
            oex, oeri, oeei = v1_oracle(x, row_idx, expert_idx, active_num)
            assert_exact(eei, oeei, "expanded_expert_idx")
            assert_exact(eri, oeri, "expanded_row_idx")
            assert ex.dtype == x.dtype
            assert_exact(bits_of(ex), bits_of(oex), "expanded_x")


# ------------------------------------------------------------------------------------------------------------------
# v2
# ------------------------------------------------------------------------------------------------------------------


def quant_rows(v, quant_mode, scale, offset, expert, start):
    """Q of one row (float32 v), returns (row, scale value)."""
    if quant_mode == 0:
        w = v * np.float32(scale[0])
        w = w + np.float32(offset[0])
        return np.clip(np.rint(w), -128, 127).astype(np.int8), np.float32(0)
    if scale is not None:
        w = v * (scale[expert - start] if scale.shape[0] != 1 else scale[0])
    else:
        w = v
    amax = np.float32(np.abs(w).max()) if w.size else np.float32(0)
    s = np.float32(amax / np.float32(127))
    if s == 0:
        return np.zeros(w.shape, np.int8), s
    return np.clip(np.rint(w / s), -127, 127).astype(np.int8), s


def v2_oracle(x, expert_idx, scale=None, offset=None, active_num=-1, expert_capacity=-1, expert_num=-1,
              drop_pad_mode=0, expert_tokens_num_type=0, quant_mode=-1, active_expert_range=(), row_idx_type=0):
    N, H = x.shape
    K = expert_idx.shape[1]
    NK = N * K
    ids = expert_idx.reshape(-1).astype(np.int64)
    big = np.iinfo(np.int64).max
    if len(active_expert_range):
        start, end = active_expert_range
    else:
        start, end = 0, (expert_num if expert_num > 0 else big)
    key = np.where(ids < start, big, ids)
    perm = np.argsort(key, kind="stable")
    A = int(((ids >= start) & (ids < end)).sum())
    xf = as_f32(x) if quant_mode != -1 else None
    out_dtype = x.dtype if quant_mode == -1 else np.int8

    def put(row_out, scale_out, d, t):
        tok, e = t // K, ids[t]
        if quant_mode == -1:
            row_out[d] = x[tok]
            if scale is not None:
                scale_out[d] = scale[tok]
        else:
            row_out[d], scale_out[d] = quant_rows(xf[tok], quant_mode, scale, offset, e, start)

    eri = np.full(NK, -1, np.int32)
    if drop_pad_mode == 0:
        R = NK if active_num <= 0 else min(active_num, NK)
        ex = np.zeros((R, H), out_dtype)
        es = np.zeros(R, np.float32)
        for i in range(min(R, A)):
            put(ex, es, i, perm[i])
        if row_idx_type == 0:
            eri[perm[:A]] = np.arange(A)
        else:
            eri[:A] = perm[:A]
    else:
        E, C = expert_num, expert_capacity
        ex = np.zeros((E * C, H), out_dtype)
        es = np.zeros(E * C, np.float32)
        filled = np.zeros(E, np.int64)
        for t in perm[:A]:
            e = ids[t]
            if filled[e] < C:
                d = e * C + filled[e]
                put(ex, es, d, t)
                eri[t] = d
            filled[e] += 1
        ex = ex.reshape(E, C, H)
    if expert_num == -1:
        counts = np.zeros((0, 2) if expert_tokens_num_type == 2 else (0,), np.int64)
    elif drop_pad_mode == 1:
        counts = np.array([(ids == e).sum() for e in range(expert_num)], np.int64)
    else:
        c = np.array([(ids == e).sum() for e in range(start, end)], np.int64)
        if expert_tokens_num_type == 0:
            counts = np.cumsum(c)
        elif expert_tokens_num_type == 1:
            counts = c
        else:
            counts = np.zeros((expert_num, 2), np.int64)
            rows = [(start + i, v) for i, v in enumerate(c) if v > 0]
            if rows:
                counts[:len(rows)] = rows
    return ex, eri, counts, es


def check_v2(x, expert_idx, **kw):
    got = moefuse.npu_moe_init_routing_v2(x, expert_idx, **kw)
    exp = v2_oracle(x if not hasattr(x, "numpy") else x.numpy(), expert_idx, **{
        k: v for k, v in kw.items() if k not in ("expert_tokens_num_flag", "x_dtype")})
    what = f"{kw}"
    assert got.expanded_x.dtype == exp[0].dtype, what
    assert_exact(bits_of(got.expanded_x), bits_of(exp[0]), "expanded_x " + what)
    assert_exact(got.expanded_row_idx, exp[1], "expanded_row_idx " + what)
    assert_exact(got.expert_token_cumsum_or_count, exp[2], "expert_token_cumsum_or_count " + what)
    assert_bitwise(got.expanded_scale, exp[3], "expanded_scale " + what)
    return got


def test_init_routing_v2_hand_computed_defaults():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    expert_idx = np.array([[2, 0], [1, 2], [0, 1]], np.int32)
    ex, eri, counts, es = moefuse.npu_moe_init_routing_v2(x, expert_idx, expert_num=3, expert_tokens_num_type=1,
                                                          expert_tokens_num_flag=True)
    # t: 0->e2 1->e0 2->e1 3->e2 4->e0 5->e1; stable by expert: t = 1, 4, 2, 5, 0, 3
    assert ex[:, 0].tolist() == [1, 5, 3, 5, 1, 3]
    assert eri.tolist() == [4, 0, 2, 5, 1, 3]
    assert counts.tolist() == [2, 2, 2]
    assert counts.dtype == np.int64 and es.dtype == np.float32


@pytest.mark.parametrize("N,K,E,H", [(0, 2, 4, 3), (1, 1, 1, 4), (9, 2, 4, 5), (33, 8, 16, 7), (12, 4, 256, 3)])
def test_init_routing_v2_dropless_sweep(rng, N, K, E, H):
    for dtype in FLOAT_DTYPES:
        x = make(grid(rng, (N, H)), dtype)
        expert_idx = rng.integers(0, E, (N, K)).astype(np.int32)
        for count_type in (0, 1, 2):
            for row_idx_type in (0, 1):
                for active_num in (-1, 0, (N * K) // 2, N * K + 1):
                    check_v2(x, expert_idx, active_num=active_num, expert_num=E, expert_tokens_num_type=count_type,
                             expert_tokens_num_flag=True, row_idx_type=row_idx_type)


def test_init_routing_v2_active_expert_range_and_without_expert_num(rng):
    x = grid(rng, (10, 4))
    expert_idx = rng.integers(0, 8, (10, 3)).astype(np.int32)
    for rng_ in ([0, 8], [2, 6], [3, 4], [7, 8]):
        for count_type in (0, 1, 2):
            check_v2(x, expert_idx, expert_num=8, active_expert_range=rng_, expert_tokens_num_type=count_type)
    check_v2(x, expert_idx)  # expert_num = -1: every id >= 0 routed, empty counts
    check_v2(x, expert_idx, expert_tokens_num_type=2)


@pytest.mark.parametrize("capacity", [1, 2, 5])
def test_init_routing_v2_drop_pad(rng, capacity):
    for dtype in FLOAT_DTYPES:
        x = make(grid(rng, (6, 3)), dtype)
        expert_idx = rng.integers(0, 4, (6, 2)).astype(np.int32)
        got = check_v2(x, expert_idx, drop_pad_mode=1, expert_num=4, expert_capacity=capacity,
                       expert_tokens_num_type=1, expert_tokens_num_flag=True)
        assert as_f32(got.expanded_x).shape == (4, capacity, 3)


def test_init_routing_v2_per_token_scale_pass_through(rng):
    x = grid(rng, (5, 4))
    scale = grid(rng, (5,))
    expert_idx = rng.integers(0, 3, (5, 2)).astype(np.int32)
    check_v2(x, expert_idx, scale=scale, expert_num=3)
    check_v2(x, expert_idx, scale=scale, expert_num=3, active_num=4)
    check_v2(x, expert_idx, scale=scale, drop_pad_mode=1, expert_num=3, expert_capacity=2)


def test_init_routing_v2_static_quant(rng):
    for dtype in FLOAT_DTYPES:
        x = make(grid(rng, (7, 6)), dtype)
        expert_idx = rng.integers(0, 4, (7, 2)).astype(np.int32)
        for s, o in ((3.0, 0.5), (40.0, -1.25), (0.5, 0.0)):  # 40: saturates at -128 / 127
            check_v2(x, expert_idx, scale=np.array([s], np.float32), offset=np.array([o], np.float32),
                     quant_mode=0, expert_num=4)


def test_init_routing_v2_dynamic_quant(rng):
    for dtype in FLOAT_DTYPES:
        x = make(grid(rng, (9, 8)), dtype)
        x[2] = 0  # an all-zero row: scale 0, q 0
        expert_idx = rng.integers(0, 4, (9, 3)).astype(np.int32)
        check_v2(x, expert_idx, quant_mode=1, expert_num=4)
        smooth = grid(rng, (4, 8), 0.25, 2.0, 1.0 / 8)
        check_v2(x, expert_idx, scale=smooth, quant_mode=1, expert_num=4, expert_tokens_num_type=2)
        check_v2(x, expert_idx, scale=smooth[1:3], quant_mode=1, expert_num=4, active_expert_range=[1, 3])
        check_v2(x, expert_idx, scale=smooth[:1], quant_mode=1, expert_num=4)
        check_v2(x, expert_idx, scale=smooth, quant_mode=1, drop_pad_mode=1, expert_num=4, expert_capacity=3)


def test_init_routing_v2_strided_inputs_and_x_dtype(rng):
    base = grid(rng, (20, 12))
    x = base[::2, 2:9]  # strided rows, a column window
    ids = rng.integers(0, 5, (3, 10)).astype(np.int32).T  # a transposed view
    a = check_v2(x, ids, expert_num=5, expert_tokens_num_type=1, x_dtype=np.float32)
    b = moefuse.npu_moe_init_routing_v2(np.ascontiguousarray(x), np.ascontiguousarray(ids), expert_num=5,
                                        expert_tokens_num_type=1)
    for u, v in zip(a, b):
        assert_exact(u, v)
