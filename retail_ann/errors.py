"""Exceptions that map to exit codes: bad input or arguments exit 2, anything else exits 1."""


class InputError(Exception):
    """The caller's input (path, column, date, config value) is wrong; the message says how to fix it."""


class ConfigError(InputError):
    """A configuration file or value is invalid."""
