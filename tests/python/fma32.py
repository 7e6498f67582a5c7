"""The dot products of the documented contracts, in numpy, exactly (docs/operators.md, grouped_matmul; docs/layer.md,
"Dot products"): float32 fused multiply-adds numpy lacks, built from exact float64 pieces, and the two orders.

* f32 / f16 weights: acc = fma(x[k], w[k], acc) for k = 0, 1, ..., K-1, from +0.
* bf16 weights (and FP8, which stand for bf16 values): vdpbf16ps's arithmetic, pairs of k, the odd one first,
  acc = fma_daz_ftz(x[k+1], w[k+1], acc); acc = fma_daz_ftz(x[k], w[k], acc) for k = 0, 2, 4, ..., a zero pair
  standing in for k = K when K is odd. fma_daz_ftz is an fma under x86's MXCSR.DAZ|FTZ: subnormal inputs read as
  zeros of their sign, and a result that is tiny after rounding (at 24 bits with an unbounded exponent: x86's
  tininess) a zero of its sign.

Written from those statements, not from the library's code."""

import numpy as np

F32 = np.float32
FLT_MIN = 2.0 ** -126
# The exact values below this are tiny: FLT_MIN - 2^-151 is the midpoint between FLT_MIN and the 24-bit number just
# below it, and its tie rounds to even, FLT_MIN (normal).
TINY_BELOW = FLT_MIN - 2.0 ** -151


def _sum_rounded_to_odd(a, b, c):
    """a * b + c (float32 operands) as float64 rounded to odd: a * b is exact in float64 (24 + 24 bits); the sum's
    rounding error is recovered exactly (TwoSum) and s is moved to its odd neighbour towards the error when it is not
    exact. Rounding that to float32 is the single correct rounding of the exact value (53 >= 24 + 2 bits), and
    comparing it with a float64 number whose last bit is even (TINY_BELOW) compares the exact value."""
    p = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    c = np.asarray(c, np.float64)
    with np.errstate(invalid="ignore"):
        s = p + c
        bb = s - p
        err = (p - (s - bb)) + (c - bb)
        even = (np.asarray(s).view(np.int64) & 1) == 0
        towards = np.where(err > 0, np.inf, -np.inf)
        return np.where((err != 0) & even, np.nextafter(s, towards), s)


def fma_f32(a, b, c):
    """float32 fma(a, b, c) = a * b + c rounded once (RNE), element-wise."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _sum_rounded_to_odd(a, b, c).astype(F32)


def denormal_as_zero(v):
    """DAZ: subnormal float32 values become zeros of their sign."""
    v = np.asarray(v, F32)
    return np.where(np.abs(v) < F32(FLT_MIN), np.copysign(F32(0), v), v)


def fma_daz_ftz_f32(a, b, c):
    """fma(a, b, c) under MXCSR.DAZ|FTZ, element-wise (float32)."""
    s = _sum_rounded_to_odd(denormal_as_zero(a), denormal_as_zero(b), denormal_as_zero(c))
    with np.errstate(over="ignore", invalid="ignore"):
        r = s.astype(F32)
        return np.where(np.abs(s) < TINY_BELOW, np.copysign(F32(0), r), r)


def is_bf16(a):
    """Whether a numpy array holds bf16 (ml_dtypes' bfloat16)."""
    return np.asarray(a).dtype.name == "bfloat16"


def dot(x, w, bf16):
    """acc[r, n] = the contract's dot product of row x[r, :] and column w[:, n] (x [R, K], w [K, N], read as float32):
    the bf16 order with fma_daz_ftz when `bf16`, else k ascending with fma."""
    x = np.asarray(x, F32)
    w = np.asarray(w, F32)
    K = x.shape[1]
    acc = np.zeros((x.shape[0], w.shape[1]), F32)
    if not bf16:
        for k in range(K):
            acc = fma_f32(x[:, k, None], w[None, k, :], acc)
        return acc
    for k in range(0, K, 2):
        if k + 1 < K:
            acc = fma_daz_ftz_f32(x[:, k + 1, None], w[None, k + 1, :], acc)
        else:
            acc = fma_daz_ftz_f32(F32(0), F32(0), acc)
        acc = fma_daz_ftz_f32(x[:, k, None], w[None, k, :], acc)
    return acc
