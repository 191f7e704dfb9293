"""The one exception type that fails a single request (never its batch, never the server)."""

from __future__ import annotations

IMAGE_FIELDS = ("IMAGE", "BACKGROUND", "PIXELS")  # PIXELS: the decoded image postprocess is handed


class RequestError(ValueError):
    """A problem with one request's data, reported back to that client verbatim.

    ``field`` names the tensor or OPTIONS key at fault so clients can map the error to the
    input they sent; ``code`` says what kind of fault it is (the hosted APIs' error codes); the
    message always says what is accepted.
    """

    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code or ("invalidImage" if field in IMAGE_FIELDS else "invalidParameter")
