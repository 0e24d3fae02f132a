"""``brm-bot slack manifest``: the Slack app manifest with this deployment's URL filled in.

The repository's ``manifest.yaml`` is this command's output for the example host
(``--url https://brm-bot.example.com``); ``tests/slack/test_manifest.py`` keeps the two equal
and checks the manifest against what the adapter registers.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
import yaml

from adapters.slack.adapter import EVENTS_PATH
from conversations.catalog import Catalog
from conversations.flows import default_flows

app = typer.Typer(help="Slack: the app manifest.", no_args_is_help=True)

EXAMPLE_URL = "https://brm-bot.example.com"
HEADER = """\
# The Slack app manifest for brm-bot. Import it at https://api.slack.com/apps
# ("Create New App" -> "From a manifest"), then follow docs/slack.md.
#
# Print it for your deployment instead of editing it by hand:
#   brm-bot slack manifest --url https://YOUR-HOST    # over HTTP: the host that reaches `brm-bot serve`
#   brm-bot slack manifest --socket-mode              # Socket Mode: no public URL (set SLACK_APP_TOKEN)
#
# This file is the output for the example host; tests/slack/test_manifest.py keeps the two
# equal and checks the manifest against what the code registers.
"""
LONG_DESCRIPTION = (
    "BRM Bot is the front door to your Business Relationship Managers. Send it a direct message "
    "(or type /brm request) to file a demand request in a few questions, capture any Slack message "
    "as a request with the message shortcut, follow your requests with /brm mine and /brm status "
    "DR-42, and see everything you asked for on the Home tab. BRMs see the open demand of the "
    "business partners they look after, and log any message as a touchpoint with a partner."
)
MANIFEST: dict[str, Any] = {
    "_metadata": {"major_version": 1, "minor_version": 1},
    "display_information": {
        "name": "BRM Bot",
        "description": "File demand requests and follow them, right where you work.",
        "background_color": "#1d3557",
        "long_description": LONG_DESCRIPTION,
    },
    "features": {
        "app_home": {
            "home_tab_enabled": True,
            "messages_tab_enabled": True,
            "messages_tab_read_only_enabled": False,
        },
        "bot_user": {"display_name": "BRM Bot", "always_online": True},
        "slash_commands": [
            {
                "command": "/brm",
                "url": None,
                "description": "File a demand request or follow yours",
                "usage_hint": "request [title] | status DR-42 | mine | help",
                "should_escape": False,
            }
        ],
        "shortcuts": [
            {
                "name": "Capture as demand request",
                "type": "message",
                "callback_id": "capture_demand_request",
                "description": "Open a demand request form filled in from this message",
            }
        ],
    },
    "oauth_config": {
        "scopes": {
            "bot": [
                "app_mentions:read",
                "channels:history",
                "chat:write",
                "commands",
                "groups:history",
                "im:history",
                "im:write",
                "users:read",
                "users:read.email",
            ]
        }
    },
    "settings": {
        "event_subscriptions": {
            "request_url": None,
            "bot_events": ["app_home_opened", "app_mention", "app_uninstalled", "message.im", "tokens_revoked"],
        },
        "interactivity": {"is_enabled": True, "request_url": None},
        "org_deploy_enabled": False,
        "socket_mode_enabled": False,
        "token_rotation_enabled": False,
    },
}


class ManifestError(ValueError):
    """The options cannot make a manifest; the message names the option."""


def events_url(url: str) -> str:
    """The events URL for the public address ``url`` (a bare host or one already ending in
    ``/slack/events``); Slack calls only https addresses."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ManifestError(f"--url: Slack needs the https:// address that reaches brm-bot serve, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ManifestError(f"--url: give the address without a query, fragment or password, not {url!r}")
    path = parts.path.rstrip("/").removesuffix(EVENTS_PATH)
    return f"https://{parts.netloc}{path}{EVENTS_PATH}"


def build(*, url: str | None, socket_mode: bool) -> dict[str, Any]:
    """The manifest: every request URL set to the events URL, or (Socket Mode) none at all."""
    if socket_mode and url is not None:
        raise ManifestError("--url: Socket Mode has no request URL; leave out --url or --socket-mode")
    if not socket_mode and url is None:
        raise ManifestError("--url: give the https:// address that reaches brm-bot serve (or use --socket-mode)")
    manifest = copy.deepcopy(MANIFEST)
    manifest["features"]["shortcuts"] += [
        {"name": s.label, "type": "message", "callback_id": s.id, "description": s.description[:150]}
        for s in Catalog(default_flows()).shortcuts()
    ]
    settings, commands = manifest["settings"], manifest["features"]["slash_commands"]
    places = [*commands, settings["event_subscriptions"], settings["interactivity"]]
    if socket_mode:
        for place in places:
            place.pop("url", None)
            place.pop("request_url", None)
        settings["socket_mode_enabled"] = True
    else:
        assert url is not None
        address = events_url(url)
        for place in places:
            place["url" if "url" in place else "request_url"] = address
    return manifest


def render(manifest: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)


@app.command("manifest")
def manifest_command(
    url: Annotated[
        str | None,
        typer.Option("--url", help="The public https address that reaches brm-bot serve, e.g. https://brm.example.org"),
    ] = None,
    socket_mode: Annotated[
        bool, typer.Option("--socket-mode", help="For Socket Mode: no request URLs, socket_mode_enabled: true.")
    ] = False,
) -> None:
    """Print the Slack app manifest for this deployment (paste it in "Create New App" -> "From a manifest")."""
    from bot.cli import _fail

    try:
        text = render(build(url=url, socket_mode=socket_mode))
    except ManifestError as exc:
        raise _fail(str(exc)) from None
    typer.echo(text, nl=False)
