"""Importing an optional extra, with a message that names what to install."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(RuntimeError):
    """A subcommand's optional dependencies are not installed."""


def require(module: str, extra: str, command: str, needs: tuple[str, ...] = ()) -> ModuleType:
    """Import ``module`` or explain that ``rmbg COMMAND`` needs ``pip install 'rmbg-triton[EXTRA]'``.

    ``needs`` names third-party modules the command uses later, lazily: checked now so that the
    message comes before any work rather than as a traceback half-way through.
    """
    try:
        for name in needs:
            importlib.import_module(name)
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise MissingExtraError(
            f"rmbg {command} needs the '{extra}' extra ({missing} is not installed): "
            f"pip install 'rmbg-triton[{extra}]'"
        ) from None
