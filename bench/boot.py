"""Django for a benchmark run as `python bench/<name>.py`: the repository on the path and
the benches' defaults, each unless the environment sets it (PostgreSQL's database
`bench`, whose test database the benches work in; var/bench; warnings only)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start_django() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
    os.environ.setdefault("VAR_DIR", str(REPO / "var" / "bench"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()
