"""The apps are layered (docs/architecture.md, "Apps and what each owns"): each imports
only the apps below it, so there is no circle between apps and a newcomer can read them
bottom-up. Drawn from the source itself, inner imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Bottom first. An app may import any app before it in this list, never one after it.
LAYERS = [
    "core",
    "organizations",
    "integrations",
    "accounting_sync",
    "audit",
    "alerts",
    "reconciliation",
    "ops",
    "accounts",
    "config",
]
# Not part of the product: the ERP simulator imports no app, and no app imports it.
SANDBOX = "erp_sandbox"


def _imports(app: str) -> set[tuple[str, str]]:
    """(module file, imported project app) for every import in the app, migrations aside
    (they name historical states, not code paths)."""
    found: set[tuple[str, str]] = set()
    for path in (REPO / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in {*LAYERS, SANDBOX} and top != app:
                    found.add((str(path.relative_to(REPO)), top))
    return found


@pytest.mark.parametrize("app", LAYERS)
def test_each_app_imports_only_the_apps_below_it(app: str) -> None:
    below = set(LAYERS[: LAYERS.index(app)])
    upward = sorted((module, target) for module, target in _imports(app) if target not in below)
    assert upward == [], f"{app} imports apps above it or the sandbox: {upward}"


def test_the_erp_sandbox_imports_no_app_of_the_product() -> None:
    assert sorted(_imports(SANDBOX)) == []


def test_every_app_is_in_a_layer() -> None:
    """A new app must take its place in LAYERS (and in docs/architecture.md)."""
    apps = {path.parent.name for path in REPO.glob("*/apps.py")}
    assert apps <= set(LAYERS), sorted(apps - set(LAYERS))
