"""User-facing errors: the CLI prints these as one line, without a traceback."""


class SentibridgeError(Exception):
    """A mistake the user can fix (bad input, bad config); exit code 1."""

    exit_code = 1


class ConfigError(SentibridgeError):
    """An unknown key, a wrong type or an unreadable config file."""

    exit_code = 2


class DataError(SentibridgeError):
    """Input data that cannot be read, or fails validation."""
