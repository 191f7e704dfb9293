"""Thin gRPC/HTTP client for the rmbg Triton ensembles (no torch, no onnxruntime)."""

from rmbg_client.client import (
    AsyncRmbgClient,
    InvalidInputError,
    RemovalResult,
    RmbgClient,
    RmbgError,
    ServerError,
    ServerUnavailableError,
)

__all__ = [
    "AsyncRmbgClient", "InvalidInputError", "RemovalResult", "RmbgClient", "RmbgError",
    "ServerError", "ServerUnavailableError",
]
