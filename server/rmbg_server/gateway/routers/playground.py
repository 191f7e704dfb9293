"""The playground page at ``/`` and the static files under ``/static`` (its script, styles, the docs' assets)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
async def playground() -> FileResponse:
    return FileResponse(STATIC / "playground.html")


def mount(app: FastAPI) -> None:
    """Serve ``static/`` at ``/static`` and the page at ``/``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
