"""Settings from the environment (and an optional ``.env``). Only ``bot/`` reads them.

A wrong value stops the start with one line naming the variable, never a traceback::

    brm-bot: BRM_BOT_TIMEZONE: 'Mars/Olympus' is not a time zone (try Europe/Berlin or UTC)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SLACK_CHANNEL = re.compile(r"slack:[CG][A-Z0-9]{6,20}")
TEAMS_CHANNEL = re.compile(r"teams:19:[A-Za-z0-9_.=-]{1,200}@thread\.(tacv2|skype)")


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the variable and the fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default="sqlite+aiosqlite:///brm-bot.db", alias="DATABASE_URL")
    timezone: str = Field(default="UTC", alias="BRM_BOT_TIMEZONE")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", alias="BRM_BOT_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field(default="text", alias="BRM_BOT_LOG_FORMAT")
    port: int = Field(default=3978, alias="PORT", ge=1, le=65535)
    host: str | None = Field(default=None, alias="HOST")
    state_dir: Path | None = Field(default=None, alias="BRM_BOT_STATE_DIR")
    metrics: bool = Field(default=False, alias="BRM_BOT_METRICS")
    retention_days: int = Field(default=30, alias="BRM_BOT_RETENTION_DAYS", ge=1, le=3650)

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")

    microsoft_app_id: str | None = Field(default=None, alias="MICROSOFT_APP_ID")
    microsoft_app_password: SecretStr | None = Field(default=None, alias="MICROSOFT_APP_PASSWORD")
    microsoft_app_tenant_id: str | None = Field(default=None, alias="MICROSOFT_APP_TENANT_ID")
    microsoft_app_type: Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"] = Field(
        default="MultiTenant", alias="MICROSOFT_APP_TYPE"
    )
    teams_local_mode: bool = Field(default=False, alias="TEAMS_LOCAL_MODE")
    teams_allowed_tenants: str | None = Field(default=None, alias="TEAMS_ALLOWED_TENANTS")
    teams_openid_metadata_url: str | None = Field(default=None, alias="TEAMS_OPENID_METADATA_URL")

    delivery_hours: str = Field(default="Mon-Fri 08:00-18:00", alias="BRM_BOT_DELIVERY_HOURS")
    weekly_budget: int = Field(default=5, alias="BRM_BOT_WEEKLY_BUDGET", ge=0, le=100)
    nudges_schedule: str = Field(default="mon-fri 09:00", alias="BRM_BOT_NUDGES_SCHEDULE")
    draft_reminders_schedule: str = Field(default="mon-fri 09:30", alias="BRM_BOT_DRAFT_REMINDERS_SCHEDULE")
    brm_channel: str | None = Field(default=None, alias="BRM_BOT_BRM_CHANNEL")

    @field_validator("brm_channel", "leadership_channel", mode="before")
    @classmethod
    def _channel(cls, value: object) -> object:
        """``slack:C0123ABCD`` or ``teams:19:…@thread.tacv2``: where unowned requests are announced
        (``BRM_BOT_BRM_CHANNEL``), where the weekly digest goes (``BRM_BOT_LEADERSHIP_CHANNEL``)."""
        if not isinstance(value, str) or not value.strip():
            return None
        text = value.strip()
        if SLACK_CHANNEL.fullmatch(text) or TEAMS_CHANNEL.fullmatch(text):
            return text
        raise ValueError(
            f"{text[:80]!r} is not a channel: use slack:C0123ABCD (the Slack channel id, from the channel's "
            "details) or teams:19:...@thread.tacv2 (the Teams channel id, from \"Get link to channel\")"
        )
    digest_schedule: str = Field(default="mon 08:00", alias="BRM_BOT_DIGEST_SCHEDULE")
    value_checks_schedule: str = Field(default="mon-fri 10:00", alias="BRM_BOT_VALUE_CHECKS_SCHEDULE")
    value_check_days: int = Field(default=30, alias="BRM_BOT_VALUE_CHECK_DAYS", ge=1, le=730)
    value_reminder_days: int = Field(default=7, alias="BRM_BOT_VALUE_REMINDER_DAYS", ge=1, le=90)
    leadership_channel: str | None = Field(default=None, alias="BRM_BOT_LEADERSHIP_CHANNEL")

    @field_validator("delivery_hours")
    @classmethod
    def _delivery_hours(cls, value: str) -> str:
        from bot.delivery import DeliveryHours

        DeliveryHours.parse(value)
        return value

    @field_validator("nudges_schedule", "draft_reminders_schedule", "digest_schedule", "value_checks_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from bot.jobs import Schedule

        Schedule.parse(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = sa.make_url(value)
        except sa.exc.ArgumentError:
            raise ValueError("is not a database URL (e.g. sqlite+aiosqlite:///brm-bot.db)") from None
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(
                f"driver {url.drivername!r} is not supported: use sqlite+aiosqlite:///file.db "
                "or postgresql+asyncpg://user@host/db"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (try Europe/Berlin or UTC)") from None
        return value

    @field_validator(
        "slack_bot_token", "slack_signing_secret", "slack_app_token", "microsoft_app_password", mode="before"
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("metrics", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("on", "true", "1", "yes"):
                return True
            if word in ("off", "false", "0", "no", ""):
                return False
            raise ValueError(f"{value!r} is neither on nor off")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("text", "json"):
            return value.strip().lower()
        if isinstance(value, str):
            raise ValueError(f"{value!r} is not a log format (use text or json)")
        return value

    @field_validator(
        "slack_api_url", "microsoft_app_id", "microsoft_app_tenant_id", "host", "teams_allowed_tenants",
        "teams_openid_metadata_url", "leadership_channel", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _platforms(self) -> Settings:
        slack: dict[str, SecretStr | None] = {"SLACK_BOT_TOKEN": self.slack_bot_token}
        if self.slack_app_token is None:  # Socket Mode never receives a signed HTTP request
            slack["SLACK_SIGNING_SECRET"] = self.slack_signing_secret
        given = [k for k, v in slack.items() if v is not None]
        if (given or self.slack_app_token) and len(given) < len(slack):
            missing = ", ".join(k for k, v in slack.items() if v is None)
            raise ValueError(f"Slack is partly configured: set {missing} too (or unset the other SLACK_ variables)")
        if self.microsoft_app_id and self.teams_local_mode:
            raise ValueError(
                "MICROSOFT_APP_ID and TEAMS_LOCAL_MODE=true are both set: local mode turns authentication off, "
                "so it is only for a bot without an app id. Unset one of them"
            )
        if self.microsoft_app_id and self.microsoft_app_type != "UserAssignedMSI" and not self.microsoft_app_password:
            raise ValueError("MICROSOFT_APP_ID is set: set MICROSOFT_APP_PASSWORD too")
        if self.microsoft_app_type == "SingleTenant" and self.microsoft_app_id and not self.microsoft_app_tenant_id:
            raise ValueError("MICROSOFT_APP_TYPE=SingleTenant needs MICROSOFT_APP_TENANT_ID")
        for name, channel in (("BRM_BOT_BRM_CHANNEL", self.brm_channel),
                              ("BRM_BOT_LEADERSHIP_CHANNEL", self.leadership_channel)):
            platform = (channel or "").partition(":")[0]
            if platform == "slack" and not self.slack_enabled:
                raise ValueError(f"{name} is a Slack channel, but Slack is not configured "
                                 f"(set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or unset {name})")
            if platform == "teams" and not self.teams_enabled:
                raise ValueError(f"{name} is a Teams channel, but Teams is not configured "
                                 f"(set MICROSOFT_APP_ID, or unset {name})")
        return self

    @field_validator("state_dir", mode="before")
    @classmethod
    def _blank_dir_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def state_path(self) -> Path:
        """Where the bot keeps local files (the Slack work journal): ``BRM_BOT_STATE_DIR``, else the
        SQLite file's folder, else ``$XDG_STATE_HOME/brm-bot`` (``~/.local/state/brm-bot``)."""
        if self.state_dir is not None:
            return self.state_dir.expanduser()
        url = sa.make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database).expanduser().resolve().parent
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "brm-bot"

    @property
    def slack_enabled(self) -> bool:
        """A bot token, and either Socket Mode's app token or HTTP mode's signing secret."""
        return self.slack_bot_token is not None and (
            self.slack_signing_secret is not None or self.slack_app_token is not None
        )

    @field_validator("teams_openid_metadata_url")
    @classmethod
    def _metadata_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https:// URL (or http:// on this machine, for tests)")
        return value

    @property
    def listen_host(self) -> str:
        """Where ``serve`` listens: ``HOST``; unset, loopback in Teams local mode, else every interface."""
        if self.host:
            return self.host
        return "127.0.0.1" if self.teams_local_mode else "0.0.0.0"

    @property
    def allowed_tenants(self) -> frozenset[str]:
        return frozenset(t.strip() for t in (self.teams_allowed_tenants or "").split(",") if t.strip())

    @property
    def teams_enabled(self) -> bool:
        return bool(self.microsoft_app_id) or self.teams_local_mode


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise :class:`SettingsError` with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = error.get("loc", ())
            field = str(where[0]) if where else ""
            alias = Settings.model_fields[field].alias if field in Settings.model_fields else field
            message = str(error.get("msg", "")).removeprefix("Value error, ")
            problems.append(f"{alias}: {message}" if alias else message)
        raise SettingsError("; ".join(problems)) from None
