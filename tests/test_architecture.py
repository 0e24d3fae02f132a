"""The one-way import rule: bot -> adapters -> conversations -> storage."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "adapters", "conversations", "storage")
PLATFORM_SDKS = ("slack_bolt", "slack_sdk", "botbuilder", "botframework", "aiohttp")
ALLOWED = {
    "storage": set(),
    "conversations": {"storage"},
    "adapters": {"conversations", "storage"},
    "bot": {"adapters", "conversations", "storage"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _imports(path):
                top = name.split(".")[0]
                where = path.relative_to(ROOT)
                if top in PACKAGES and top != package and top not in ALLOWED[package]:
                    found.append(f"{where} imports {name}")
                if package in ("conversations", "storage") and top in PLATFORM_SDKS:
                    found.append(f"{where} imports the platform SDK {name}")
                if (
                    package == "adapters"
                    and top.startswith("botbuilder")
                    and not str(where).startswith("adapters/teams")
                ):
                    found.append(f"{where} imports botbuilder outside adapters/teams")
    return found


def test_imports_point_one_way_only() -> None:
    assert _violations() == []


def test_the_rule_checker_catches_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import slack_bolt\nfrom bot.cli import app\n")
    assert _imports(bad) == {"slack_bolt", "bot.cli"}
