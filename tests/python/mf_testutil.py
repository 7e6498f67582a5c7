"""Helpers of the Python tests: libm's expf (so that the numpy oracles use the same exponential as the C++
operators and results can be compared bitwise), bf16 rounding written out, dtype-parametrised inputs, and
comparisons.

The oracles in these tests are written from the documented torch_npu semantics and docs/operators.md (the headers' formulas), in numpy
float32 arithmetic, one operation at a time; they never call moefuse.
"""

import ctypes
import ctypes.util
import json
import pathlib
import struct

import numpy as np
import pytest

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    ml_dtypes = None

_libm = ctypes.CDLL(ctypes.util.find_library("m"))
_libm.expf.argtypes = [ctypes.c_float]
_libm.expf.restype = ctypes.c_float
_expf = np.frompyfunc(_libm.expf, 1, 1)


def expf(a):
    """C's expf, element-wise, on a float32 array (numpy's own exp may differ in the last bit)."""
    a = np.asarray(a, dtype=np.float32)
    return np.asarray(_expf(a), dtype=np.float32).reshape(a.shape)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def round_bf16(a):
    """float32 -> nearest bf16 value (ties to even), returned as float32. NaN stays NaN."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = r.astype(np.uint32).view(np.float32).copy()
    out[np.isnan(a)] = np.nan
    return out


def round_to(dtype, a):
    """float32 values rounded once (RNE) to dtype ('f32', 'f16', 'bf16'), returned as float32."""
    a = f32(a)
    if dtype == "f32":
        return a.copy()
    if dtype == "f16":
        return a.astype(np.float16).astype(np.float32)
    return round_bf16(a)


# bf16 numpy arrays need ml_dtypes (the test extra installs it); without it the sweeps run over f32 and f16, and bf16
# is covered through torch (test_interop.py).
FLOAT_DTYPES = ["f32", "bf16", "f16"] if ml_dtypes is not None else ["f32", "f16"]


def make(values, dtype):
    """A numpy array of `dtype` ('f32', 'f16', 'bf16' (needs ml_dtypes), or a numpy dtype) holding `values`, which
    must be exactly representable."""
    values = np.asarray(values)
    if dtype == "f32":
        return values.astype(np.float32)
    if dtype == "f16":
        out = values.astype(np.float16)
    elif dtype == "bf16":
        if ml_dtypes is None:
            pytest.skip("bf16 numpy arrays need ml_dtypes")
        out = values.astype(np.float32).astype(ml_dtypes.bfloat16)
    else:
        return values.astype(dtype)
    assert np.array_equal(out.astype(np.float32), values.astype(np.float32), equal_nan=True), "not representable"
    return out


def grid(rng, shape, lo=-4.0, hi=4.0, step=1.0 / 16):
    """Random values on a grid (multiples of `step` in [lo, hi]): exact in f32, f16 and bf16 alike."""
    n = int(round((hi - lo) / step))
    return (rng.integers(0, n + 1, size=shape) * step + lo).astype(np.float32)


def as_f32(a):
    """A result (numpy of any float dtype incl. ml_dtypes.bfloat16, or torch) as a float32 numpy array."""
    if type(a).__module__.startswith("torch"):
        return a.float().numpy()
    return np.asarray(a).astype(np.float32)


def assert_bitwise(actual, expected, msg=""):
    """Same values bit for bit (NaN payloads aside, -0.0 vs 0.0 distinguished)."""
    a = as_f32(actual)
    e = f32(expected)
    assert a.shape == e.shape, f"{msg}: shape {a.shape} != {e.shape}"
    same = (a.view(np.uint32) == e.view(np.uint32)) | (np.isnan(a) & np.isnan(e))
    if not same.all():
        i = tuple(np.argwhere(~same)[0])
        raise AssertionError(f"{msg}: {int((~same).sum())} of {a.size} differ; first at {i}: "
                             f"got {a[i]!r}, expected {e[i]!r}")


def assert_exact(actual, expected, msg=""):
    a = np.asarray(actual)
    e = np.asarray(expected)
    assert a.shape == e.shape, f"{msg}: shape {a.shape} != {e.shape}"
    if not np.array_equal(a, e):
        i = tuple(np.argwhere(a != e)[0])
        raise AssertionError(f"{msg}: {int((a != e).sum())} of {a.size} differ; first at {i}: "
                             f"got {a[i]!r}, expected {e[i]!r}")


def read_safetensors_raw(path):
    """name -> (safetensors dtype string, shape, raw bytes) of a .safetensors file, read without torch."""
    data = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items()}
