"""Thin gRPC/HTTP client for the rmbg Triton ensembles (no torch, no onnxruntime, no CLI).

Its errors are the project's one error model (``rmbg_hosted.errors``), re-exported here.
"""

from rmbg_client.client import AsyncRmbgClient, RemovalResult, RmbgClient
from rmbg_hosted.errors import (
    ImageInputError,
    InvalidInputError,
    RmbgError,
    ServerError,
    ServerUnavailableError,
    UploadError,
)
from rmbg_hosted.fetch import FetchPolicy

__all__ = [
    "AsyncRmbgClient", "FetchPolicy", "ImageInputError", "InvalidInputError", "RemovalResult", "RmbgClient",
    "RmbgError", "ServerError", "ServerUnavailableError", "UploadError",
]
