"""Settings: what each mode of each platform needs, and nothing more."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from bot.delivery import DeliveryWorker
from bot.platforms.slack import build_slack
from bot.runtime import Runtime
from bot.settings import SettingsError, load_settings
from conversations.engine import Engine
from tests.conftest import FakeClock

BOT_TOKEN = "xoxb-0000-1111-settingstest"  # test values
APP_TOKEN = "xapp-1-A0FAKE-1234-settingstest"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "MICROSOFT_APP_ID", "TEAMS_LOCAL_MODE",
                 "BRM_BOT_BRM_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


async def test_socket_mode_needs_no_signing_secret(engine: Engine, clock: FakeClock) -> None:
    settings = load_settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)
    assert settings.slack_enabled
    runtime = Runtime(settings=settings, db=engine.db, engine=engine, worker=DeliveryWorker(engine.db, {}, clock=clock))
    async with aiohttp.ClientSession() as http:
        adapter = build_slack(settings, runtime, http)
        app = web.Application()
        adapter.mount(app)
        assert not [r for r in app.router.routes() if r.method == "POST"], "nothing to forge a signature for"


def test_http_mode_still_needs_the_signing_secret() -> None:
    with pytest.raises(SettingsError, match=r"^Slack is partly configured: set SLACK_SIGNING_SECRET too"):
        load_settings(SLACK_BOT_TOKEN=BOT_TOKEN)
    with pytest.raises(SettingsError, match="set SLACK_BOT_TOKEN too"):
        load_settings(SLACK_APP_TOKEN=APP_TOKEN)


@pytest.mark.parametrize(
    ("given", "platform", "kept"),
    [
        ("slack:C0123ABCD", {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN}, "slack:C0123ABCD"),
        ("  teams:19:8a1e2d3c4b5a@thread.tacv2 ", {"TEAMS_LOCAL_MODE": True}, "teams:19:8a1e2d3c4b5a@thread.tacv2"),
        ("", {}, None),
    ],
)
def test_the_brm_team_channel_is_a_slack_or_teams_channel(given: str, platform: dict[str, object],
                                                         kept: str | None) -> None:
    assert load_settings(BRM_BOT_BRM_CHANNEL=given, **platform).brm_channel == kept


@pytest.mark.parametrize(
    ("given", "platform", "says"),
    [
        ("#brm-team", {"TEAMS_LOCAL_MODE": True}, r"^BRM_BOT_BRM_CHANNEL: '#brm-team' is not a channel: use slack:"),
        ("C0123ABCD", {"TEAMS_LOCAL_MODE": True}, r"^BRM_BOT_BRM_CHANNEL: 'C0123ABCD' is not a channel"),
        ("teams:general", {"TEAMS_LOCAL_MODE": True}, r"^BRM_BOT_BRM_CHANNEL: 'teams:general' is not a channel"),
        ("slack:C0123ABCD", {"TEAMS_LOCAL_MODE": True}, r"^BRM_BOT_BRM_CHANNEL is a Slack channel, but Slack is not"),
        ("teams:19:abc@thread.tacv2", {}, r"^BRM_BOT_BRM_CHANNEL is a Teams channel, but Teams is not configured"),
    ],
)
def test_a_wrong_brm_team_channel_stops_the_start_naming_the_variable(given: str, platform: dict[str, object],
                                                                      says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        load_settings(BRM_BOT_BRM_CHANNEL=given, **platform)
