"""Builds the Slack adapter from the settings (``brm-bot serve`` calls this)."""

from __future__ import annotations

import secrets

import aiohttp

from adapters.slack import SlackAdapter
from adapters.slack.journal import Journal, JournalLocked
from bot.runtime import Runtime, StartupError, utcnow
from bot.settings import Settings
from bot.web import ServedAdapter

JOURNAL_FILE = "slack-journal.jsonl"


def build_slack(settings: Settings, runtime: Runtime, http: aiohttp.ClientSession) -> ServedAdapter:
    """The Slack adapter for these settings; Socket Mode when ``SLACK_APP_TOKEN`` is set.

    Settings already refused a partial Slack configuration. Socket Mode needs no signing secret
    (nothing arrives over HTTP, and the adapter mounts no route); when none is set, the adapter
    gets a random one nobody knows, so a signed request could never be forged with an empty key.
    """
    if settings.slack_bot_token is None or not settings.slack_enabled:
        raise ValueError("Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET")
    signing_secret = (
        settings.slack_signing_secret.get_secret_value()
        if settings.slack_signing_secret is not None
        else secrets.token_hex(32)
    )
    path = settings.state_path / JOURNAL_FILE
    try:
        journal = Journal.open(path)
    except JournalLocked as exc:
        raise StartupError(f"BRM_BOT_STATE_DIR: {exc}; give each process a folder of its own") from None
    except OSError as exc:
        raise StartupError(f"BRM_BOT_STATE_DIR: cannot write the Slack work journal {path} ({exc.strerror})") from None
    return SlackAdapter(
        runtime.engine,
        bot_token=settings.slack_bot_token.get_secret_value(),
        signing_secret=signing_secret,
        app_token=settings.slack_app_token.get_secret_value() if settings.slack_app_token else None,
        api_url=settings.slack_api_url,
        http=http,
        clock=utcnow,
        journal=journal,
    )
