"""The prompts file: UTF-8 text, one prompt a line, blank lines ignored (`--prompts FILE`)."""

from __future__ import annotations

from pathlib import Path

from ardistill.errors import DataFileError


def read_prompts(path: str | Path) -> list[str]:
    """The prompts of `path`, in order, each stripped of surrounding white space; a missing,
    unreadable or empty file (no non-blank line) is a `DataFileError`."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"prompts file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: prompts file is not UTF-8 text ({e})") from e
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise DataFileError(f"{path}: prompts file is empty (one prompt a line)")
    return prompts
