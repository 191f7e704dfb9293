"""The session's Triton server fixtures (``model_repository``, ``triton``) live in tests/conftest.py: the
gateway's tests share the same server."""
