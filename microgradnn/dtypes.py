"""dtypes are numpy's (CuPy uses the same objects), exposed under PyTorch's names, and
the default floating dtype (``torch.get_default_dtype``) that ops and tensors read."""

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int8 = np.dtype("int8")
uint8 = np.dtype("uint8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

# PyTorch's aliases: torch.float is float32, torch.long is int64 ...
ALIASES = {
    "float": float32,
    "double": float64,
    "half": float16,
    "short": int16,
    "int": int32,
    "long": int64,
    "bool": bool_,
}


_default_dtype = float32


def get_default_dtype() -> np.dtype:
    """The dtype of new floating tensors (``mg.set_default_dtype`` changes it)."""
    return _default_dtype


def set_default_dtype(dtype: object) -> None:
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"set_default_dtype: only floating-point dtypes are allowed, got {dtype}")
    _default_dtype = dtype
