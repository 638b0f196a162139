"""Error types of hmtools.

The CLI catches :class:`HMToolsError` once, prints its message on one line and exits with
``exit_code``: 2 for bad input or usage (the user must change the command or the files),
1 for a failure while running.
"""

from __future__ import annotations


class HMToolsError(Exception):
    """Base class of every error hmtools raises on purpose; exit code 1 by default."""

    exit_code = 1


class InputError(HMToolsError):
    """Bad input or usage: a missing root, an unknown name, a wrong option value (exit 2)."""

    exit_code = 2


class DataFormatError(InputError):
    """A file exists but does not hold what its format promises (malformed, hostile, wrong shape)."""


class ConfigError(InputError):
    """A configuration file or override is invalid (unknown key, wrong type)."""


class StaleVersionError(HMToolsError):
    """A write was based on a mask version that someone else has replaced since (compare-and-set)."""


class LockedError(HMToolsError):
    """A sample is locked by another annotator whose lease has not expired."""
