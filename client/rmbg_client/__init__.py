"""Thin gRPC/HTTP client for the rmbg Triton ensembles (no torch, no onnxruntime, no CLI)."""

from rmbg_client.client import AsyncRmbgClient, RemovalResult, RmbgClient
from rmbg_client.errors import (
    ImageInputError,
    InvalidInputError,
    RmbgError,
    ServerError,
    ServerUnavailableError,
    UploadError,
)

__all__ = [
    "AsyncRmbgClient", "ImageInputError", "InvalidInputError", "RemovalResult", "RmbgClient", "RmbgError",
    "ServerError", "ServerUnavailableError", "UploadError",
]
