"""Every error the client library raises, in one place, so callers can catch by kind.

The split that matters to a caller is: their own input (never worth retrying), the server
being unreachable or reloading (retry later), and the server failing on a valid request.
"""

from __future__ import annotations


class RmbgError(Exception):
    """Base class of every error this client raises."""


class ServerUnavailableError(RmbgError):
    """The server could not be reached or the model is not ready.

    ``transient`` marks a model being reloaded after a crash: worth retrying shortly.
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class InvalidInputError(RmbgError):
    """The server rejected this request's data (bad image, bad option); retrying will not help."""


class ServerError(RmbgError):
    """The server failed while processing a valid request."""


class ImageInputError(InvalidInputError):
    """An input image could not be read on the client (bad URL, base64, path...)."""


class UploadError(RmbgError):
    """The result could not be uploaded to the given URL."""
