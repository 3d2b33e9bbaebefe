"""The exception tree. Every error a user can cause is an ``AutotuneError``.

    AutotuneError          one line for the user; the CLI prints it and exits non-zero
    ├── SpecError          the tune spec is invalid (names the key and the fix)
    ├── WorkloadError      a workload file is missing, empty or malformed
    ├── LaunchError        a server did not start (quotes the server's own error line)
    ├── ProbeError         the server could not be measured at all
    └── StoreError         the results database cannot be used
"""


class AutotuneError(Exception):
    """An error with a message fit to show the user as is."""


class SpecError(AutotuneError):
    pass


class WorkloadError(AutotuneError):
    pass


class LaunchError(AutotuneError):
    def __init__(self, message: str, *, log_excerpt: str = "") -> None:
        super().__init__(message)
        self.log_excerpt = log_excerpt


class PortInUseError(LaunchError):
    pass


class ProbeError(AutotuneError):
    pass


class StoreError(AutotuneError):
    pass
