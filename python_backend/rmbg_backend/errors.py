"""The one exception type that fails a single request (never its batch, never the server)."""

from __future__ import annotations


class RequestError(ValueError):
    """A problem with one request's data, reported back to that client verbatim.

    ``field`` names the tensor or OPTIONS key at fault so clients can map the error to the
    input they sent; the message always says what is accepted.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
