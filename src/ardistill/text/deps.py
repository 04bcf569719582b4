"""The optional dependencies of the text encoders (the `text` extra), imported on demand."""

from __future__ import annotations

import importlib
from types import ModuleType

from ardistill.errors import UserError

INSTALL_HINT = "pip install 'ardistill[text]'"


def require(module: str, what: str) -> ModuleType:
    """Import an optional dependency of the `text` extra, or a `UserError` saying how to get
    it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{what} needs the Python package {module!r}, which is not installed: "
                        f"{INSTALL_HINT}") from e
