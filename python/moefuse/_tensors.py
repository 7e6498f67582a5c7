"""Conversion between Python arrays and moefuse tensors, shared by the operators (and, later, the layer).

Inputs are not copied: numpy arrays, torch tensors and other DLPack producers become read-only moefuse views with
their own strides (moefuse's operators read through strides). The exceptions are numpy arrays in a layout no view can
express (non-native byte order, data not aligned to the element size), which are copied first. Results are
moefuse-owned buffers handed to numpy or torch without a copy, so that they share memory with the C++ output.

bf16: numpy has no bfloat16. A numpy array of dtype ``ml_dtypes.bfloat16`` is accepted (and bf16 results for numpy
inputs are returned with that dtype) when the ``ml_dtypes`` package is installed; without it, a bf16 result that
would have to be returned as a numpy array raises TypeError. torch's ``torch.bfloat16`` always works.
"""

from __future__ import annotations

import operator
import sys
from typing import Any, Optional

import numpy as np

from . import _core

try:  # optional: numpy arrays of bfloat16
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    _ml_dtypes = None

#: numpy dtype of ml_dtypes.bfloat16, or None when ml_dtypes is not installed.
BF16_NUMPY: Optional[np.dtype] = np.dtype(_ml_dtypes.bfloat16) if _ml_dtypes is not None else None

SUPPORTED = "f32, f16, bf16, i8, u8, i32, i64 or bool"

_NUMPY_DTYPES = {
    np.dtype(np.float32): "f32",
    np.dtype(np.float16): "f16",
    np.dtype(np.int8): "i8",
    np.dtype(np.uint8): "u8",
    np.dtype(np.int32): "i32",
    np.dtype(np.int64): "i64",
    np.dtype(np.bool_): "bool",
}

# c10::ScalarType codes, the integers torch_npu's dtype arguments (output_dtype, x_dtype, dst_type) take.
SCALAR_TYPE_CODES = {
    "uint8": 0, "int8": 1, "int16": 2, "int32": 3, "int64": 4, "float16": 5, "float32": 6, "float64": 7,
    "complex32": 8, "complex64": 9, "complex128": 10, "bool": 11, "qint8": 12, "quint8": 13, "qint32": 14,
    "bfloat16": 15, "float8_e5m2": 23, "float8_e4m3fn": 24,
}
_CODE_NAMES = {v: k for k, v in SCALAR_TYPE_CODES.items()}
_MOEFUSE_NAMES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "int8": "i8", "uint8": "u8",
                  "int32": "i32", "int64": "i64", "bool": "bool"}
_ALIASES = {"float": "float32", "half": "float16", "int": "int32", "long": "int64", "bool_": "bool",
            "f32": "float32", "f16": "float16", "bf16": "bfloat16", "i8": "int8", "u8": "uint8",
            "i32": "int32", "i64": "int64"}


def _torch():
    """The torch module if it has been imported (by the caller), else None. moefuse never imports torch itself
    unless a torch tensor is already in play."""
    return sys.modules.get("torch")


def is_torch_tensor(obj: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def kind_of(obj: Any) -> str:
    """'torch' for a torch tensor, else 'numpy': results come back as the main input's kind. Other DLPack producers
    get numpy results (``xp.from_dlpack(result)`` converts them without a copy)."""
    return "torch" if is_torch_tensor(obj) else "numpy"


def _torch_dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def to_tensor(obj: Any, op: str, arg: str) -> "_core.Tensor":
    """A read-only moefuse view of `obj` (no copy). Errors name the operator `op` and the argument `arg`."""
    if isinstance(obj, np.ndarray):
        # The two layouts a moefuse view cannot express are copied (the only copies moefuse makes of an input):
        # non-native byte order and data not aligned to the element size.
        if not obj.dtype.isnative:
            obj = obj.astype(obj.dtype.newbyteorder("="))
        if not obj.flags.aligned:
            obj = obj.copy()
        dt = obj.dtype
        if BF16_NUMPY is not None and dt == BF16_NUMPY:
            return _core.Tensor.from_array(obj.view(np.int16), op, arg, "bf16")
        name = _NUMPY_DTYPES.get(dt)
        if name is None:
            raise TypeError(f"{op}: {arg}: expected a tensor of dtype {SUPPORTED}, got numpy {dt.name}")
        if name == "bool":
            obj = obj.view(np.uint8)
        return _core.Tensor.from_array(obj, op, arg, name)
    if is_torch_tensor(obj):
        torch = _torch()
        if obj.device.type != "cpu":
            raise ValueError(f"{op}: {arg}: expected a CPU tensor, got one on device {obj.device}")
        if obj.layout != torch.strided:
            raise ValueError(f"{op}: {arg}: expected a strided (dense) tensor, got layout {obj.layout}")
        if obj.requires_grad:
            obj = obj.detach()  # the operators are not differentiable; DLPack refuses tensors that need grad
        tname = _torch_dtype_name(obj.dtype)
        name = _MOEFUSE_NAMES.get(tname)
        if name is None:
            raise TypeError(f"{op}: {arg}: expected a tensor of dtype {SUPPORTED}, got {obj.dtype}")
        if name == "bf16":
            obj = obj.view(torch.int16)  # bf16 travels as its bit pattern (older torch: no bf16 over DLPack)
        elif name == "bool":
            obj = obj.view(torch.uint8)  # older torch exports bool as uint8 over DLPack
        return _core.Tensor.from_array(obj, op, arg, name)
    if obj is None:
        raise ValueError(f"{op}: {arg}: expected a tensor, got None")
    return _core.Tensor.from_array(obj, op, arg, None)


def to_optional_tensor(obj: Any, op: str, arg: str) -> "Optional[_core.Tensor]":
    return None if obj is None else to_tensor(obj, op, arg)


def from_tensor(t: "_core.Tensor", kind: str, op: str, name: str) -> Any:
    """The result `t` as a numpy array or torch tensor sharing its memory (no copy)."""
    if kind == "torch":
        torch = _torch()
        if t.dtype == "bf16":
            return t.torch(bits=True).view(torch.bfloat16)
        return t.torch()
    if t.dtype == "bf16":
        if BF16_NUMPY is None:
            raise TypeError(f"{op}: {name}: a bf16 result cannot be returned as a numpy array without the ml_dtypes "
                            "package (pip install ml_dtypes), or pass torch tensors")
        return t.numpy(bits=True).view(BF16_NUMPY)
    return t.numpy()


# ------------------------------------------------------------------------------------------------------------------
# Scalar arguments: checked here so that a wrong type names the argument (ValueError for a bad value, TypeError for
# a bad type), as the C++ errors do.
# ------------------------------------------------------------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def to_int(value: Any, op: str, arg: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {arg}: expected an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {arg}: expected an int, got {type(value).__name__}") from None
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise ValueError(f"{op}: {arg}: expected an int64 value, got {v}")
    return v


def to_optional_int(value: Any, op: str, arg: str, default: Optional[int] = None) -> Optional[int]:
    return default if value is None else to_int(value, op, arg)


def to_float(value: Any, op: str, arg: str) -> float:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{op}: {arg}: expected a float, got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {arg}: expected a float, got {type(value).__name__}") from None


def to_bool(value: Any, op: str, arg: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if is_torch_tensor(value) and value.numel() == 1 and _torch_dtype_name(value.dtype) == "bool":
        return bool(value.item())
    raise TypeError(f"{op}: {arg}: expected a bool, got {type(value).__name__}")


def to_int_list(value: Any, op: str, arg: str) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{op}: {arg}: expected a list of ints, got {type(value).__name__}")
    return [to_int(v, op, arg) for v in value]


def dtype_key(value: Any) -> Optional[str]:
    """The torch-style name ('bfloat16', 'int32', ...) of a dtype argument given as a torch dtype, a numpy dtype or
    type, ml_dtypes.bfloat16, a name, or a c10::ScalarType code (torch_npu's integers); None if unrecognised."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return _CODE_NAMES.get(int(value))
    torch = _torch()
    if torch is not None and isinstance(value, torch.dtype):
        return _torch_dtype_name(value)
    if isinstance(value, str):
        name = value.replace("torch.", "")
        name = _ALIASES.get(name, name)
        return name if name in SCALAR_TYPE_CODES else None
    try:
        dt = np.dtype(value)
    except TypeError:
        return None
    if BF16_NUMPY is not None and dt == BF16_NUMPY:
        return "bfloat16"
    name = "bool" if dt == np.bool_ else dt.name
    return name if name in SCALAR_TYPE_CODES else None


def dtype_to_moefuse(value: Any) -> Optional[str]:
    """moefuse's name ('bf16', 'i32', ...) for a dtype argument, or None if moefuse has no such dtype."""
    key = dtype_key(value)
    return _MOEFUSE_NAMES.get(key) if key is not None else None


def dtype_to_code(value: Any, op: str, arg: str) -> int:
    """The c10::ScalarType code of a dtype argument (ints pass through)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    key = dtype_key(value)
    if key is None:
        raise TypeError(f"{op}: {arg}: expected a dtype (torch dtype, numpy dtype or torch_npu integer code), "
                        f"got {value!r}")
    return SCALAR_TYPE_CODES[key]


def describe_dtype_arg(value: Any) -> str:
    key = dtype_key(value)
    if key is not None:
        return _MOEFUSE_NAMES.get(key, key)
    return repr(value)
