"""Errors that the CLI turns into one clean line and exit code 2."""
from __future__ import annotations


class BlobenchError(Exception):
    """A user-facing error: bad name, bad parameter, malformed matrix, bad plugin output."""


class UnknownNameError(BlobenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParameterError(BlobenchError, ValueError):
    pass


class PluginError(BlobenchError):
    """A plugin (problem, estimator, metric, claim) broke its contract, e.g. returned the wrong shape."""


class NonFiniteDraws(BlobenchError):
    """An estimator returned NaN or Inf draws: the cell is ``diverged`` and ``estimate`` says so in one line."""

    def __init__(self, message: str, count: int = 0, n: int = 0):
        super().__init__(message)
        self.count, self.n = count, n

    def __reduce__(self):  # picklable across worker processes with its counts
        return (type(self), (str(self), self.count, self.n))
