"""Each benchmark prints its figures as one JSON line and keeps them for `summary.py`."""

from __future__ import annotations

import json
import os
from pathlib import Path


def results_dir() -> Path:
    folder = Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
    folder = folder / "bench-results"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def emit(name: str, figures: dict[str, object]) -> None:
    """Print the figures as one JSON line and store them under `name`."""
    line = json.dumps(figures)
    (results_dir() / f"{name}.json").write_text(line + "\n")
    print(line, flush=True)
