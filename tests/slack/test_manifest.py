"""manifest.yaml asks Slack for exactly what the code handles, and the scopes that needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.slack.adapter import EVENTS_PATH
from tests.bot.test_cli import run
from tests.slack.conftest import SlackHarness

ROOT = Path(__file__).resolve().parents[2]
# The bot scope each Web API method the adapter calls needs (Slack's method reference).
METHOD_SCOPES: dict[str, set[str]] = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    "chat.getPermalink": set(),
    "conversations.open": {"im:write"},
    # reading back an outbox post: in a DM, a public channel, a private channel (the BRM channel may be either)
    "conversations.history": {"im:history", "channels:history", "groups:history"},
    "users.lookupByEmail": {"users:read.email"},
    "users.info": {"users:read", "users:read.email"},  # the email needs users:read.email
    "views.open": set(),
    "views.publish": set(),
}
EVENT_SCOPES = {
    "message.im": {"im:history"}, "app_mention": {"app_mentions:read"}, "app_home_opened": set(),
    "app_uninstalled": set(), "tokens_revoked": set(),
}


def manifest() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "manifest.yaml").read_text(encoding="utf-8"))


def called_methods() -> set[str]:
    """Every Web API method named in the adapter's source: ``client.chat_update(``,
    ``_proactive.conversations_history(`` (the delivery worker's client) or
    ``client.api_call("chat.postMessage"`` (but not ``api_call`` itself)."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "adapters" / "slack").glob("*.py"))
    names = set(re.findall(r"(?:client|_proactive)\.([a-z]+_[A-Za-z_]+)\(", source)) - {"api_call"}
    direct = set(re.findall(r"client\.api_call\(\s*\"([a-z]+\.[A-Za-z]+)\"", source))
    return {name.replace("_", ".", 1) for name in names} | direct


async def test_commands_shortcuts_and_events_match_the_code_both_ways(slack: SlackHarness) -> None:
    features = slack.adapter.features
    app = manifest()
    assert {c["command"] for c in app["features"]["slash_commands"]} == features.commands
    shortcuts = app["features"].get("shortcuts", [])
    assert {s["callback_id"] for s in shortcuts if s["type"] == "message"} == features.message_shortcuts
    assert {s["callback_id"] for s in shortcuts if s["type"] == "global"} == features.global_shortcuts
    assert set(app["settings"]["event_subscriptions"]["bot_events"]) == features.events
    assert app["settings"]["interactivity"]["is_enabled"] is features.uses_interactivity


def test_every_url_is_the_one_events_endpoint() -> None:
    app = manifest()
    urls = [c["url"] for c in app["features"]["slash_commands"]]
    urls += [app["settings"]["event_subscriptions"]["request_url"], app["settings"]["interactivity"]["request_url"]]
    assert all(url.startswith("https://") and url.endswith(EVENTS_PATH) for url in urls)
    assert len(set(urls)) == 1


def test_the_bot_scopes_are_those_the_code_needs_and_no_more() -> None:
    app = manifest()
    methods = called_methods()
    assert methods <= set(METHOD_SCOPES), f"add the scopes of {methods - set(METHOD_SCOPES)} to this test"
    needed = {"commands"} | set().union(*(METHOD_SCOPES[m] for m in methods))
    needed |= set().union(*(EVENT_SCOPES[e] for e in app["settings"]["event_subscriptions"]["bot_events"]))
    assert set(app["oauth_config"]["scopes"]["bot"]) == needed


def test_the_app_can_be_chatted_with_and_has_a_home() -> None:
    app = manifest()
    home = app["features"]["app_home"]
    assert home["home_tab_enabled"] and home["messages_tab_enabled"] and not home["messages_tab_read_only_enabled"]
    assert app["features"]["bot_user"]["display_name"]
    assert isinstance(app["settings"]["socket_mode_enabled"], bool)
    assert len(app["display_information"]["description"]) <= 140
    assert 175 <= len(app["display_information"]["long_description"]) <= 4000
    for shortcut in app["features"]["shortcuts"]:
        assert len(shortcut["name"]) <= 80 and len(shortcut["description"]) <= 150


def test_the_manifest_uses_slacks_schema_keys() -> None:
    app = manifest()
    assert set(app) <= {"_metadata", "display_information", "features", "oauth_config", "settings"}
    assert app["display_information"]["name"] and len(app["display_information"]["name"]) <= 35
    assert set(app["features"]) <= {"app_home", "bot_user", "shortcuts", "slash_commands", "unfurl_domains"}
    (command,) = app["features"]["slash_commands"]
    assert command["url"].endswith("/slack/events") and command["description"]
    assert {"name", "type", "callback_id", "description"} <= set(app["features"]["shortcuts"][0])
    assert set(app["oauth_config"]) == {"scopes"} and set(app["oauth_config"]["scopes"]) == {"bot"}
    settings = app["settings"]
    assert set(settings) <= {"event_subscriptions", "interactivity", "org_deploy_enabled", "socket_mode_enabled",
                             "token_rotation_enabled", "allowed_ip_address_ranges"}
    assert set(settings["event_subscriptions"]) == {"request_url", "bot_events"}
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False, "HTTP is the default; docs/slack.md says how to switch"
    assert settings["token_rotation_enabled"] is False, "the bot uses a long-lived xoxb token"


def test_the_repositorys_manifest_is_what_the_command_prints_for_the_example_host(tmp_path: Path) -> None:
    result = run(["slack", "manifest", "--url", "https://brm-bot.example.com"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "manifest.yaml").read_text(encoding="utf-8")


def test_the_command_fills_in_the_host_everywhere(tmp_path: Path) -> None:
    result = run(["slack", "manifest", "--url", "https://brm.corp.example.org/"], tmp_path)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    settings = printed["settings"]
    urls = {c["url"] for c in printed["features"]["slash_commands"]}
    urls |= {settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"]}
    assert urls == {"https://brm.corp.example.org/slack/events"}
    assert settings["socket_mode_enabled"] is False
    assert "brm-bot.example.com" not in result.stdout.split("\n_metadata:")[1]


def test_socket_mode_has_no_urls_and_the_socket_enabled(tmp_path: Path) -> None:
    result = run(["slack", "manifest", "--socket-mode"], tmp_path)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    settings = printed["settings"]
    assert settings["socket_mode_enabled"] is True
    assert "url" not in printed["features"]["slash_commands"][0]
    assert "request_url" not in settings["event_subscriptions"] and "request_url" not in settings["interactivity"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["event_subscriptions"]["bot_events"] == manifest()["settings"]["event_subscriptions"]["bot_events"]
    assert printed["oauth_config"] == manifest()["oauth_config"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--url", "http://brm.example.org"], "brm-bot: --url: Slack needs the https:// address"),
        (["--url", "brm.example.org"], "brm-bot: --url: Slack needs the https:// address"),
        (["--url", "https://brm.example.org/?x=1"], "brm-bot: --url: give the address without a query"),
        ([], "brm-bot: --url: give the https:// address that reaches brm-bot serve"),
        (["--url", "https://brm.example.org", "--socket-mode"], "brm-bot: --url: Socket Mode has no request URL"),
    ],
)
def test_a_wrong_url_is_one_line_naming_the_option(tmp_path: Path, args: list[str], says: str) -> None:
    result = run(["slack", "manifest", *args], tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(says)


def test_log_as_touchpoint_is_a_message_shortcut_beside_the_request_capture() -> None:
    shortcuts = {s["callback_id"]: s for s in manifest()["features"]["shortcuts"]}
    assert set(shortcuts) == {"capture_demand_request", "log_touchpoint"}
    assert shortcuts["log_touchpoint"]["name"] == "Log as touchpoint"
    assert shortcuts["log_touchpoint"]["type"] == "message"
