"""The one map from dtype names to torch dtypes.

Commands take the short names (`fp32`, `bf16`, `fp16`); the long names (`float32`, ...) are
accepted too, and are what pairs datasets record in their identity (`long_name`).
"""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16,
                                  "fp16": torch.float16}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_LONG = {v: k for k, v in _ALIASES.items()}
DTYPE_CHOICES = tuple(DTYPES)


def canonical(name: str) -> str:
    """'float32' | 'fp32' -> 'fp32'; ValueError naming the choices otherwise."""
    short = _ALIASES.get(name, name)
    if short not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    return short


def resolve(name: str) -> torch.dtype:
    """A dtype name (short or long) -> torch.dtype."""
    return DTYPES[canonical(name)]


def long_name(name: str) -> str:
    """'fp32' | 'float32' -> 'float32' (the spelling recorded in pairs datasets)."""
    return _LONG[canonical(name)]


def name_of(dtype: torch.dtype) -> str:
    """torch.float32 -> 'fp32'."""
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    raise ValueError(f"no ardistill name for {dtype}")
