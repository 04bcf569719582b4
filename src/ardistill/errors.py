"""Every error ardistill raises on purpose, in one place (the ground floor: imports nothing).

`UserError` and its subclasses are problems the user can fix (a missing or wrong file, a bad
option, a corrupt dataset); the command line prints them as `ardistill: error: ...` and exits
with code 2, without a traceback (`ardistill.cli.main`). `USER_ERRORS` adds the built-in
exceptions that library functions raise for bad arguments (ValueError, KeyError) and the
operating system's file errors (OSError: a full disk, a missing permission, a file where a
folder should be), which the command line treats the same way. Set `ARDISTILL_TRACEBACK=1` to
see the traceback of such an error.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: printed as `ardistill: error: ...`, exit code 2."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file or state dict does not fit the model it is loaded into."""


class DataFileError(UserError, ValueError):
    """A data file (a shard, a manifest, caption features, samples) is missing, truncated,
    corrupt or not in the expected format."""


class PairsFileError(DataFileError):
    """A file of a pairs dataset is missing, truncated, corrupt or inconsistent."""


class SettingsMismatch(UserError, ValueError):
    """An output folder holds a dataset made with other settings or another teacher."""


class RankError(UserError, RuntimeError):
    """An error raised on rank 0 during setup, delivered to every rank."""


class TrainingDiverged(UserError, RuntimeError):
    """A non-finite loss or gradient: the run stopped; the last good checkpoint is intact."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, KeyError, OSError)


def message(e: BaseException) -> str:
    """The one-line text of a user error (a KeyError's text without its quotes)."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        return f"{where}: {e.strerror}"
    return str(e)
