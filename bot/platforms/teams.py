"""Builds the Teams adapter from the settings (the only place that reads the Teams variables)."""

from __future__ import annotations

import aiohttp

from adapters.teams import OPENID_METADATA_URL, TeamsAdapter, TeamsConfig
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web import ServedAdapter


def teams_config(settings: Settings) -> TeamsConfig:
    """``MICROSOFT_APP_*`` and ``TEAMS_*`` as the adapter's configuration."""
    password = settings.microsoft_app_password.get_secret_value() if settings.microsoft_app_password else None
    return TeamsConfig(
        app_id=settings.microsoft_app_id,
        app_password=password,
        tenant_id=settings.microsoft_app_tenant_id,
        app_type=settings.microsoft_app_type,
        local_mode=settings.teams_local_mode,
        allowed_tenants=settings.allowed_tenants,
        openid_metadata_url=settings.teams_openid_metadata_url or OPENID_METADATA_URL,
    )


def build_teams(settings: Settings, runtime: Runtime, http: aiohttp.ClientSession) -> ServedAdapter:
    """The Teams adapter for ``brm-bot serve``; its Bot Connector calls go through ``http``."""
    return TeamsAdapter(engine=runtime.engine, db=runtime.db, config=teams_config(settings), http=http)
