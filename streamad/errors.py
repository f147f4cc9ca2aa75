"""Exceptions that carry a message meant for the person running streamad."""

from __future__ import annotations


class StreamadError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(StreamadError):
    """A setting or command-line option is invalid."""


class InputError(StreamadError):
    """An input file or stream cannot be read at all (not a single bad record)."""
