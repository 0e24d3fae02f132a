"""The rules of who may import whom, checked on the real tree (and the checker on a planted one).

- Imports point one way: bot -> adapters -> conversations -> storage.
- A platform SDK is imported only in its own adapter: ``slack_*`` in ``adapters/slack``,
  ``botbuilder``/``botframework``/``msrest`` in ``adapters/teams``; ``aiohttp`` never in
  ``conversations/`` or ``storage/``.
- One adapter never imports another.
- Settings are read only in ``bot/``: no ``os.environ``/``os.getenv`` and no ``pydantic_settings``
  anywhere else.
- No code touches a private member of a third-party package (``from x import _y``,
  ``module._name``).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "adapters", "conversations", "storage")
ALLOWED = {
    "storage": set(),
    "conversations": {"storage"},
    "adapters": {"conversations", "storage"},
    "bot": {"adapters", "conversations", "storage"},
}
SDK_HOME = {
    "slack_bolt": "adapters/slack",
    "slack_sdk": "adapters/slack",
    "botbuilder": "adapters/teams",
    "botframework": "adapters/teams",
    "msrest": "adapters/teams",
}
NEUTRAL_FORBIDDEN = frozenset({"aiohttp", *SDK_HOME})
SETTINGS_MODULES = frozenset({"pydantic_settings", "dotenv"})


def _imports(tree: ast.AST) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names imported from it) for every absolute import."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    """Local names bound to third-party modules (``import x as y`` -> {"y": "x"})."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out[(alias.asname or alias.name).split(".")[0]] = alias.name.split(".")[0]
    return out


def violations(root: Path) -> list[str]:
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
            adapter = where.split("/")[1] if package == "adapters" and where.count("/") >= 2 else None
            for module, names in _imports(tree):
                top = module.split(".")[0]
                if top in PACKAGES and top != package and top not in ALLOWED[package]:
                    found.append(f"{where} imports {module}")
                if package in ("conversations", "storage") and top in NEUTRAL_FORBIDDEN:
                    found.append(f"{where} imports the platform library {module}")
                home = SDK_HOME.get(top)
                if home is not None and not where.startswith(home + "/"):
                    found.append(f"{where} imports {module} outside {home}")
                if top == "adapters" and adapter is not None:
                    other = module.split(".")[1] if module.count(".") >= 1 else ""
                    if other and other != adapter:
                        found.append(f"{where} imports another adapter ({module})")
                if top in SETTINGS_MODULES and package != "bot":
                    found.append(f"{where} reads settings ({module}) outside bot/")
                if top not in PACKAGES and any(n.startswith("_") and not n.startswith("__") for n in names):
                    found.append(f"{where} imports a private name from {module}")
            aliases = _module_aliases(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    base = node.value.id
                    if base == "os" and node.attr in ("environ", "getenv") and package != "bot":
                        found.append(f"{where}:{node.lineno} reads the environment outside bot/")
                    third_party = aliases.get(base)
                    if (
                        third_party is not None
                        and third_party not in PACKAGES
                        and node.attr.startswith("_")
                        and not node.attr.startswith("__")
                    ):
                        found.append(f"{where}:{node.lineno} uses the private {base}.{node.attr}")
    return found


def test_the_tree_keeps_the_rules() -> None:
    assert violations(ROOT) == []


def test_the_checker_finds_each_kind_of_planted_violation(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(tmp_path) == []  # the copy is clean, so every finding below is a planted one
    planted = {
        "storage/bad_up.py": "from conversations.engine import Engine\n",
        "conversations/bad_sdk.py": "import aiohttp\n",
        "adapters/teams/bad_slack.py": "from slack_sdk.web import WebClient\n",
        "adapters/slack/bad_teams.py": "import botbuilder.core\n",
        "adapters/console/bad_other.py": "from adapters.slack.render import render\n",
        "storage/bad_env.py": "import os\nURL = os.environ.get('DATABASE_URL')\n",
        "adapters/slack/bad_settings.py": "from pydantic_settings import BaseSettings\n",
        "adapters/teams/bad_private.py": "import msrest\nx = msrest._internal\nfrom aiohttp import _helpers\n",
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    found = "\n".join(violations(tmp_path))
    assert "storage/bad_up.py imports conversations.engine" in found
    assert "conversations/bad_sdk.py imports the platform library aiohttp" in found
    assert "adapters/teams/bad_slack.py imports slack_sdk.web outside adapters/slack" in found
    assert "adapters/slack/bad_teams.py imports botbuilder.core outside adapters/teams" in found
    assert "adapters/console/bad_other.py imports another adapter (adapters.slack.render)" in found
    assert "storage/bad_env.py:2 reads the environment outside bot/" in found
    assert "adapters/slack/bad_settings.py reads settings (pydantic_settings) outside bot/" in found
    assert "adapters/teams/bad_private.py:2 uses the private msrest._internal" in found
    assert "adapters/teams/bad_private.py imports a private name from aiohttp" in found
    assert len(violations(tmp_path)) == 9
