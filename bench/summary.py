"""Joins the figures of every benchmark of this `make bench` into one JSON line, printed last."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import results_dir

ORDER = ("sync", "pages", "audit", "ops", "inbound", "reconcile", "night", "recover")


def main() -> int:
    figures: dict[str, object] = {}
    for name in ORDER:
        path = results_dir() / f"{name}.json"
        if path.exists():
            figures.update(json.loads(path.read_text()))
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
