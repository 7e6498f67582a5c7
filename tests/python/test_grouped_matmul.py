"""npu_grouped_matmul (the MoE form: [x], [weight], group_type=0) against a numpy oracle written from the torch_npu semantics and
the arithmetic contract of include/moefuse/ops/grouped_matmul.h: per output element an fp32 fused multiply-add
chain, over k = 0..K-1 for f32 / f16 weights and in pairs of k, the odd one first, with DAZ/FTZ for bf16 weights
(fma32.py: exact, from float64 pieces), then bias, activation (with C's expf) and one rounding."""

import numpy as np
import pytest

import moefuse
from fma32 import dot, is_bf16
from mf_testutil import FLOAT_DTYPES, as_f32, assert_bitwise, assert_exact, expf, f32, grid, make, round_to


def group_rows(group_list, group_list_type, M):
    """[(expert, row_begin, row_end)] for the groups, in order."""
    groups, start = [], 0
    gl = np.asarray(group_list, np.int64)
    if group_list_type == 2:
        for gid, cnt in gl:
            if cnt <= 0:
                break
            groups.append((int(gid), start, start + int(cnt)))
            start += int(cnt)
        return groups
    for g, v in enumerate(gl):
        end = int(v) if group_list_type == 0 else start + int(v)
        groups.append((g, start, end))
        start = end
    return groups


def activation(v, act_type):
    v = f32(v)
    if act_type == 1:
        return np.where(v < 0, np.float32(0), v)
    if act_type == 2:
        t = (v + ((v * v) * v) * np.float32(0.044715)) * np.float32(1.5957691216057308)
        return (v / (expf(-np.abs(t)) + np.float32(1))) * expf(np.minimum(t, np.float32(0)))
    if act_type == 4:
        return v / (expf(v * np.float32(-1.702)) + np.float32(1))
    if act_type == 5:
        return v / (np.float32(1) + expf(-v))
    return v


def gmm_oracle(x, w, group_list, group_list_type, out_dtype, bias=None, scale=None, per_token_scale=None,
               act_type=0):
    M, N = x.shape[0], w.shape[2]
    y = np.zeros((M, N), np.int32 if out_dtype == "i32" else np.float32)
    for e, b, end in group_rows(group_list, group_list_type, M):
        if end <= b:
            continue
        if x.dtype == np.int8:
            acc = x[b:end].astype(np.int64) @ w[e].astype(np.int64)
            if bias is not None and bias.dtype == np.int32:
                acc = acc + bias[e].astype(np.int64)
            acc = acc.astype(np.int64).astype(np.uint64).astype(np.uint32).view(np.int32)  # wraps modulo 2^32
            if out_dtype == "i32":
                y[b:end] = acc
                continue
            v = acc.astype(np.float32) * as_f32(scale[e])
            if per_token_scale is not None:
                v = v * per_token_scale[b:end, None]
            if bias is not None and bias.dtype != np.int32:
                v = v + as_f32(bias[e])
        else:
            v = dot(as_f32(x[b:end]), as_f32(w[e]), is_bf16(w))
            if bias is not None:
                v = v + as_f32(bias[e])
        y[b:end] = activation(v, act_type)
    return y if out_dtype == "i32" else round_to(out_dtype, y)


def test_hand_computed_two_experts():
    x = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    w = np.array([[[1, 0], [0, 1]], [[2, 0], [0, 3]]], np.float32)
    (y,) = moefuse.npu_grouped_matmul([x], [w], group_list=np.array([1, 3], np.int64), group_type=0,
                                      split_item=2)
    assert y.tolist() == [[1, 2], [6, 12], [10, 18]]


@pytest.mark.parametrize("M,K,N,E", [(0, 4, 3, 2), (1, 1, 1, 1), (9, 16, 8, 3), (33, 40, 17, 5)])
def test_float_paths_match_oracle(rng, M, K, N, E):
    counter = 0
    for dtype in FLOAT_DTYPES:
        for group_list_type in (0, 1, 2):
            for transposed in (False, True):
                counter += 1
                x = make(grid(rng, (M, K), -2, 2), dtype)
                if transposed:  # Hugging Face storage [E, N, K] read in place as [E, K, N]
                    w = make(rng.normal(size=(E, N, K)).astype(np.float32), "f32")
                    w = make(round_to(dtype, w), dtype).transpose(0, 2, 1)
                else:
                    w = make(round_to(dtype, rng.normal(size=(E, K, N)).astype(np.float32)), dtype)
                counts = rng.multinomial(M, np.ones(E) / E) if M else np.zeros(E, np.int64)
                if group_list_type == 0:
                    gl = np.cumsum(counts)
                elif group_list_type == 1:
                    gl = counts
                else:
                    ids = rng.permutation(E)
                    gl = np.stack([ids, counts], axis=1)
                gl = gl.astype(np.int64)
                bias = None
                if counter % 2:
                    bias = make(round_to("f32" if dtype == "bf16" else dtype, grid(rng, (E, N))),
                                "f32" if dtype == "bf16" else dtype)
                act = (0, 1, 2, 4, 5)[counter % 5]
                (y,) = moefuse.npu_grouped_matmul([x], [w], bias=None if bias is None else [bias], group_list=gl,
                                                  group_type=0, group_list_type=group_list_type, act_type=act,
                                                  split_item=3)
                assert y.dtype == x.dtype
                exp = gmm_oracle(x, w, gl, group_list_type, dtype, bias=bias, act_type=act)
                assert_bitwise(y, exp, f"{dtype} type={group_list_type} transposed={transposed} act={act}")


def test_rows_past_the_groups_are_zero_and_empty_groups(rng):
    x = grid(rng, (10, 4))
    w = grid(rng, (3, 4, 5))
    for gl, t in (([2, 0, 3], 1), ([0, 4, 4], 0), ([[2, 3], [0, 4], [1, 0], [0, 5]], 2)):
        (y,) = moefuse.npu_grouped_matmul([x], [w], group_list=gl, group_type=0, group_list_type=t)
        assert_bitwise(y, gmm_oracle(x, w, gl, t, "f32"), f"{gl}")
        covered = sum(end - b for _, b, end in group_rows(gl, t, 10))
        assert not y[covered:].any()


def test_int8_to_int32(rng):
    x = rng.integers(-128, 128, (12, 33)).astype(np.int8)
    w = rng.integers(-128, 128, (3, 33, 7)).astype(np.int8)
    gl = np.array([5, 0, 7], np.int64)
    for bias in (None, rng.integers(-2**31, 2**31, (3, 7)).astype(np.int32)):
        (y,) = moefuse.npu_grouped_matmul([x], [w], bias=None if bias is None else [bias], group_list=gl,
                                          group_type=0, group_list_type=1, output_dtype=np.int32)
        assert y.dtype == np.int32
        assert_exact(y, gmm_oracle(x, w, gl, 1, "i32", bias=bias))


@pytest.mark.parametrize("out", ["bf16", "f16"])
def test_int8_per_channel_per_token(rng, out):
    M, K, N, E = 11, 20, 9, 3
    x = rng.integers(-128, 128, (M, K)).astype(np.int8)
    w = rng.integers(-128, 128, (E, K, N)).astype(np.int8)
    gl = np.array([4, 0, 7], np.int64)
    scale_dtype = "bf16" if out == "bf16" else "f32"
    scale = make(round_to(scale_dtype, rng.uniform(1e-4, 1e-3, (E, N)).astype(np.float32)), scale_dtype)
    pts = rng.uniform(0.5, 2, M).astype(np.float32)
    for bias in (None, rng.integers(-1000, 1000, (E, N)).astype(np.int32), grid(rng, (E, N))):
        for act in (0, 5):
            for p in (None, pts):
                (y,) = moefuse.npu_grouped_matmul(
                    [x], [w], bias=None if bias is None else [bias], scale=[scale],
                    per_token_scale=None if p is None else [p], group_list=gl, group_type=0, group_list_type=1,
                    act_type=act, output_dtype={"bf16": 15, "f16": 5}[out])  # torch_npu's integer codes
                exp = gmm_oracle(x, w, gl, 1, out, bias=bias, scale=scale, per_token_scale=p, act_type=act)
                assert_bitwise(y, exp, f"{out} bias={None if bias is None else bias.dtype} act={act}")


def test_group_list_as_python_list_and_ungrouped_form(rng):
    x = grid(rng, (6, 5))
    w = grid(rng, (2, 5, 3))
    (a,) = moefuse.npu_grouped_matmul([x], [w], group_list=[2, 6], group_type=0)
    (b,) = moefuse.npu_grouped_matmul((x,), (w,), group_list=np.array([2, 6]), group_type=0)
    assert_exact(a, b)
    (c,) = moefuse.npu_grouped_matmul([x], [w[0]])  # group_type None: one plain matmul
    assert_bitwise(c, dot(x, w[0], is_bf16(w)))


def test_random_values_follow_the_fma_chain(rng):
    # Values with full mantissas: the fp32 fma chain rounds at every step, so this checks the accumulation order.
    x = rng.normal(size=(8, 64)).astype(np.float32)
    w = rng.normal(size=(2, 64, 16)).astype(np.float32)
    (y,) = moefuse.npu_grouped_matmul([x], [w], group_list=[3, 5], group_type=0, group_list_type=1)
    assert_bitwise(y, gmm_oracle(x, w, [3, 5], 1, "f32"))


def test_the_bf16_contract_steps():
    # fma32.py's emulation on hand-picked steps (x86 MXCSR.DAZ|FTZ semantics; tests/kernels/bf16_dot_test.cpp checks
    # the C++ statements against the hardware).
    from fma32 import fma_daz_ftz_f32 as f
    m = np.float32(2.0 ** -126)
    cases = [((2.0 ** -130, 2.0 ** 100, 0.0), 0.0),             # subnormal input read as zero
             ((1.0, 1.0, 2.0 ** -140), 1.0),                     # subnormal accumulator read as zero
             ((-(2.0 ** -70), 2.0 ** -70, 0.0), -0.0),           # tiny result: a zero of its sign
             ((0.0, 0.0, -0.0), 0.0), ((-0.0, 0.0, -0.0), -0.0),
             ((1.0 - 2.0 ** -24, m, 0.0), 0.0),                  # FLT_MIN - 2^-150: tiny at 24 bits
             ((-(2.0 ** -25), m, m), m),                         # FLT_MIN - 2^-151: the tie rounds to FLT_MIN
             ((-1.5 * 2.0 ** -25, m, m), 0.0),
             ((1.0, 1.0, 2.0 ** -24), 1.0),                      # ties to even
             ((2.0 ** 127, 4.0, 0.0), np.inf)]
    for (a, b, c), want in cases:
        got = f(np.float32(a), np.float32(b), np.float32(c))
        assert np.float32(got).view(np.uint32) == np.float32(want).view(np.uint32), (a, b, c, got, want)


def test_bf16_weights_take_pairs_with_denormals_as_zero():
    # Through the operator (bf16 x and weights, bf16 output): products 2^24, 0, 1, -2^24 sum to 1 in pairs, odd first
    # (2^24, then 2^24 - 2^24 = 0, then + 1), but to 0 in k order (2^24 + 1 rounds to 2^24); -2^-140 is flushed to -0
    # and -0 + -0 stays -0 (K = 2); K = 3's zero pair turns the -0 into +0; a subnormal x reads as zero (2^-130 *
    # 2^100 would be 2^-30).
    if "bf16" not in FLOAT_DTYPES:
        pytest.skip("bf16 numpy arrays need ml_dtypes")
    t, b = 2.0 ** -70, 2.0 ** 12
    x32, w32 = np.array([[b, 0, 1, -b]], np.float32), np.array([[b], [0], [1], [b]], np.float32)
    (y,) = moefuse.npu_grouped_matmul([x32], [w32])
    assert_bitwise(y, np.array([[0.0]], np.float32), "f32 weights: k ascending")
    for xs, ws, want in (([b, 0, 1, -b], [b, 0, 1, b], 1.0), ([0, t], [-1, -t], -0.0), ([0, t, 0], [-1, -t, -1], 0.0),
                         ([2.0 ** -130], [2.0 ** 100], 0.0)):
        x = make(np.array([xs], np.float32), "bf16")
        w = make(np.array([ws], np.float32).T, "bf16")
        (y,) = moefuse.npu_grouped_matmul([x], [w])
        assert_bitwise(y, np.array([[want]], np.float32), f"x {xs} w {ws}")
        assert_bitwise(y, round_to("bf16", dot(as_f32(x), as_f32(w), True)), f"oracle, x {xs} w {ws}")
