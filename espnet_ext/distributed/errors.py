"""The launcher's one error type."""


class LaunchError(Exception):
    """Bad geometry, command or batch configuration; raised before anything starts."""
