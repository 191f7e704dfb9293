"""One FastAPI router per protocol (tasks, fal, GMI) and for files, operations and the playground."""
