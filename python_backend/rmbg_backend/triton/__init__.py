"""Triton Python-backend adapters (copied into the repository as ``model.py``) and their shared glue.

Only ``glue`` is imported as a module; the adapters import ``triton_python_backend_utils``,
which exists only inside the Triton stub.
"""
