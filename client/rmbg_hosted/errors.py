"""The one error model: every failure carries a code, the parameter at fault, a message and an HTTP status.

The client library raises these (``rmbg_client`` re-exports them), the task flow raises them, and
each gateway protocol renders them in its own shape with one function (the routers). The split
that matters to a caller: their own input (4xx, never worth retrying), an outage (503 with
Retry-After: retry later), and a failure on a valid request (500).
"""

from __future__ import annotations

from typing import Any


class RmbgError(Exception):
    """Base class of every error this project raises towards a caller.

    ``str(error)`` is ``"parameter: message"`` (or the message alone), so logs and CLI output
    say which input was at fault without knowing the protocol.
    """

    status = 500
    default_code = "internalError"

    def __init__(self, message: str, *, code: str | None = None, parameter: str | None = None,
                 status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(f"{parameter}: {message}" if parameter else message)
        self.message = message
        self.code = code or self.default_code
        self.parameter = parameter
        self.status = status or type(self).status
        self.retry_after = retry_after

    def at(self, parameter: str | None) -> RmbgError:
        """The same error named after the caller's own parameter (a flow knows the request's names)."""
        return type(self)(self.message, code=self.code, parameter=parameter, status=self.status,
                          retry_after=self.retry_after)

    def shape(self) -> dict[str, Any]:
        """The fields every protocol renders from."""
        return {"code": self.code, "message": str(self), "parameter": self.parameter}


class InvalidInputError(RmbgError):
    """The caller's data was refused (bad image, bad option): retrying the same request will not help."""

    status = 400
    default_code = "invalidParameter"


class ImageInputError(InvalidInputError):
    """An input image could not be read (bad URL, base64, path, or not an image)."""

    default_code = "invalidImage"


class UploadError(InvalidInputError):
    """The result could not be uploaded to the caller's URL (their endpoint refused or failed)."""

    default_code = "uploadFailed"


class AuthError(RmbgError):
    """A missing or unknown API key."""

    status = 401
    default_code = "invalidApiKey"


class TooLargeError(InvalidInputError):
    """A request body over the limit."""

    status = 413
    default_code = "payloadTooLarge"


class NotFoundError(RmbgError):
    """A job, request or file that does not exist here (or belongs to another tenant: the same answer)."""

    status = 404
    default_code = "notFound"


class ConflictError(InvalidInputError):
    """An id that was used before (a taskUUID)."""

    status = 409
    default_code = "conflictTaskUUID"


class BusyError(RmbgError):
    """A bound was reached (in-flight work, the queue, a rate or a quota): retry after ``retry_after``."""

    status = 429
    default_code = "serverBusy"


class ServerUnavailableError(RmbgError):
    """The inference service cannot be reached or the model is not ready: an outage, 503 with Retry-After.

    ``transient`` marks a model being reloaded after a crash: worth retrying within a second.
    """

    status = 503
    default_code = "serviceUnavailable"

    def __init__(self, message: str, *, transient: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("retry_after", 1 if transient else 5)
        super().__init__(message, **kwargs)
        self.transient = transient

    def at(self, parameter: str | None) -> RmbgError:
        return ServerUnavailableError(self.message, transient=self.transient, code=self.code, parameter=parameter,
                                      retry_after=self.retry_after)


class ServerError(RmbgError):
    """The server failed while processing a valid request."""
