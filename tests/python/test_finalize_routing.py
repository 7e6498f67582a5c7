"""npu_moe_finalize_routing against a numpy oracle written from the torch_npu semantics and include/moefuse/ops/finalize_routing.h:
float32 accumulation skip1 (+ skip2), then slot k = 0..K-1 in order, (row + bias) * scale, one final rounding;
-1 indices are zero rows in every drop_pad_mode (docs/operators.md, Numerics: -1 indices)."""

import numpy as np
import pytest

import moefuse
from mf_testutil import FLOAT_DTYPES, as_f32, assert_bitwise, f32, grid, make, round_to


def finalize_oracle(rows, skip1, skip2, bias, scales, src_to_dst, expert_for_source_row, drop_pad_mode, k, dtype):
    rows = as_f32(rows)
    H = rows.shape[-1]
    flat = rows.reshape(-1, H)
    K = scales.shape[1] if scales is not None else k
    N = scales.shape[0] if scales is not None else src_to_dst.shape[0] // k
    out = np.zeros((N, H), np.float32)
    for n in range(N):
        acc = None
        if skip1 is not None:
            acc = as_f32(skip1[n])
            if skip2 is not None:
                acc = acc + as_f32(skip2[n])
        for kk in range(K):
            j = kk * N + n if drop_pad_mode in (0, 1) else n * K + kk
            d = src_to_dst[j]
            row = np.zeros(H, np.float32) if d == -1 else flat[d]
            v = row + as_f32(bias[expert_for_source_row[n, kk]]) if bias is not None else row
            term = as_f32(scales)[n, kk] * v if scales is not None else v
            acc = term if acc is None else acc + term
        out[n] = acc if acc is not None else 0
    return round_to(dtype, out)


def test_hand_computed_token_major():
    rows = np.array([[1, 1], [2, 2], [3, 3], [4, 4]], np.float32)
    skip1 = np.array([[10, 10], [20, 20]], np.float32)
    scales = np.array([[0.5, 0.25], [1.0, 2.0]], np.float32)
    src = np.array([3, 0, 1, 2], np.int32)  # (n, k) at n*K + k
    out = moefuse.npu_moe_finalize_routing(rows, skip1, None, None, scales, src, None, drop_pad_mode=2)
    assert out.tolist() == [[10 + 0.5 * 4 + 0.25 * 1] * 2, [20 + 1 * 2 + 2 * 3] * 2]


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_matches_oracle_in_every_mode(rng, mode):
    for dtype in FLOAT_DTYPES:
        for N, K, H, E in ((0, 2, 3, 4), (1, 1, 1, 1), (7, 2, 5, 4), (13, 4, 9, 8)):
            C = max(N, 1)
            if mode in (0, 2):
                rows = make(grid(rng, (N * K, H)), dtype)
                src = rng.permutation(N * K).astype(np.int32)
            else:
                rows = make(grid(rng, (E, C, H)), dtype)
                src = rng.choice(E * C, N * K, replace=False).astype(np.int32)
            if N * K:
                src[rng.random(N * K) < 0.2] = -1  # dropped slots
            skip1 = make(grid(rng, (N, H)), dtype)
            skip2 = make(grid(rng, (N, H)), dtype)
            bias = make(grid(rng, (E, H)), dtype)
            scales = make(grid(rng, (N, K), -1, 1), dtype)
            ids = rng.integers(0, E, (N, K)).astype(np.int32)
            for variant in range(4):
                args = dict(skip1=skip1 if variant != 3 else None, skip2=skip2 if variant == 0 else None,
                            bias=bias if variant in (0, 2) else None, scales=scales if variant != 1 else None,
                            expert_for_source_row=ids if variant in (0, 2) else None)
                if variant == 2:
                    args["scales"] = f32(as_f32(scales))  # float32 scales are accepted for every dtype
                k = K if args["scales"] is None else 1
                out = moefuse.npu_moe_finalize_routing(rows, args["skip1"], args["skip2"], args["bias"],
                                                       args["scales"], src, args["expert_for_source_row"],
                                                       drop_pad_mode=mode, k=k)
                exp = finalize_oracle(rows, args["skip1"], args["skip2"], args["bias"], args["scales"], src,
                                      args["expert_for_source_row"], mode, k, dtype)
                assert out.dtype == rows.dtype
                assert_bitwise(out, exp, f"{dtype} mode={mode} N={N} variant={variant}")


def test_random_values_sum_in_order(rng):
    # Full-mantissa values: every add rounds, so the order skip1, skip2, then slots 0..K-1 is checked.
    N, K, H = 6, 4, 16
    rows = rng.normal(size=(N * K, H)).astype(np.float32)
    skip1, skip2 = rng.normal(size=(2, N, H)).astype(np.float32)
    scales = rng.random((N, K)).astype(np.float32)
    src = rng.permutation(N * K).astype(np.int32)
    out = moefuse.npu_moe_finalize_routing(rows, skip1, skip2, None, scales, src, None, 2)
    assert_bitwise(out, finalize_oracle(rows, skip1, skip2, None, scales, src, None, 2, 1, "f32"))


def test_strided_rows_and_scales(rng):
    N, K, H = 5, 3, 6
    rows = grid(rng, (H, N * K)).T  # transposed view
    scales = grid(rng, (K, N)).T
    src = rng.permutation(N * K).astype(np.int32)
    out = moefuse.npu_moe_finalize_routing(rows, None, None, None, scales, src, None, 0, 1)
    ref = moefuse.npu_moe_finalize_routing(np.ascontiguousarray(rows), None, None, None,
                                           np.ascontiguousarray(scales), src, None, 0, 1)
    assert_bitwise(out, ref)
    assert_bitwise(out, finalize_oracle(rows, None, None, None, scales, src, None, 0, 1, "f32"))
