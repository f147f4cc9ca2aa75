"""Exceptions that carry a message meant for the person running streamad."""

from __future__ import annotations


class StreamadError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(StreamadError):
    """A setting or command-line option is invalid."""


class InputError(StreamadError):
    """An input file or stream cannot be read at all (not a single bad record)."""


class MissingExtra(StreamadError):
    """An optional part of streamad needs a package that is not installed."""


def require(module: str, extra: str, what: str) -> None:
    """Import ``module`` or raise ``MissingExtra`` saying which extra brings it.

    >>> require("json", "none", "reading JSON")
    >>> require("no_such_module_xyz", "kafka", "streamad run")
    Traceback (most recent call last):
    ...
    streamad.errors.MissingExtra: streamad run needs the no_such_module_xyz package: pip install 'streamad-loe[kafka]'
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the {module} package: pip install 'streamad-loe[{extra}]'") from None
