"""The errors ccnet raises for a mistake in what it was given (a config, a file, a dataset, a
checkpoint, a path), as opposed to a bug.

``ccnet`` (the command line) prints a `CCNetError` as one line and exits with status 2;
any other exception is a bug and shows its traceback. Each type also derives from the builtin
error a caller would have caught before (``ValueError``, ``FileNotFoundError``, ...), so
``except ValueError`` around a library call keeps working. A leaf module: every part of the
package may import it.
"""

from __future__ import annotations

__all__ = [
    "CCNetError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "InputError",
    "LossDivergedError",
    "MissingExtraError",
    "PathError",
    "RunFolderError",
    "UnsafeFileError",
    "UserFileNotFoundError",
]


class CCNetError(Exception):
    """A mistake in the input, not in ccnet; the message names the key, file or path at fault."""


class ConfigError(CCNetError, ValueError):
    """A config file, override or stored config is malformed or holds a value out of range."""


class DatasetError(CCNetError, ValueError):
    """A dataset on disk is missing, incomplete or malformed; the message names the path at fault."""


class CheckpointError(CCNetError, ValueError):
    """A checkpoint that is not ccnet's, is of a newer format, or does not fit the model or config."""


class UnsafeFileError(CCNetError, ValueError):
    """A PyTorch file that cannot be read safely: missing, truncated, corrupt, or pickled code."""


class InputError(CCNetError, ValueError):
    """An input given on the command line or to a public function that cannot be used as given
    (an image, a video, a size, an option's value)."""


class PathError(CCNetError, OSError):
    """A path the user gave that cannot be read or written as asked."""


class UserFileNotFoundError(PathError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class RunFolderError(PathError, FileExistsError):
    """An output folder that holds something a command would destroy."""


class LossDivergedError(CCNetError, FloatingPointError):
    """Training stopped: the loss is not finite (the message names the last good checkpoint)."""


class MissingExtraError(CCNetError, ImportError):
    """A command or option needs an optional dependency that is not installed; the message names
    the ``pip install 'ccnet-pytorch[extra]'`` line."""
