"""Pure background-removal library behind the Triton Python-backend steps.

Nothing here imports ``triton_python_backend_utils``: every step is a plain function over
numpy arrays and bytes, so it is unit-tested without a server and reused by the benchmarks.
"""

from rmbg_backend.errors import RequestError

__all__ = ["RequestError"]
