"""The Teams app package: ``manifest.json`` plus the two icons, zipped for upload.

An admin uploads the zip in the Teams admin centre (or "Upload a custom app" in Teams).
The manifest follows the current schema (v1.22): a bot in personal chats, teams and group
chats, and message extension actions on any message: "Capture as demand request", and those the
flows declare ("Log as touchpoint").

Example::

    build_package(Path("brm-bot-teams.zip"), app_id="00000000-0000-0000-0000-000000000000")
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import uuid
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters.teams.adapter import CAPTURE_COMMAND, CAPTURE_TITLE
from conversations.catalog import Catalog

MANIFEST_VERSION = "1.22"
MANIFEST_SCHEMA = f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
COLOR_ICON = "color.png"
OUTLINE_ICON = "outline.png"
ICON_SIZES = {COLOR_ICON: (192, 192), OUTLINE_ICON: (32, 32)}
BOT_SCOPES = ("personal", "team", "groupChat")
# The schema's limits (MicrosoftTeams.schema.json v1.22).
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
SHORT_NAME_MAX, DEVELOPER_NAME_MAX, URL_MAX = 30, 32, 2048


class PackageError(Exception):
    """The package cannot be built; the message says what to set.

    ``field`` names what is wrong (``app_id``, ``name``, ``developer``, ``website_url``,
    ``privacy_url``, ``terms_url``, ``version`` or ``out``), so a caller can name its own option.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def manifest(
    *,
    app_id: str,
    version: str = "1.0.0",
    short_name: str = "BRM Bot",
    website_url: str = "https://example.com/brm-bot",
    privacy_url: str | None = None,
    terms_url: str | None = None,
    developer: str = "brm-bot",
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """The ``manifest.json`` for the bot registered as ``app_id`` (the app uses the same id).

    The bot's command list comes from the flows' declarations (``catalog``); Teams shows at most 10.
    """
    listed = catalog.command_list() if catalog is not None else []
    commands = [{"title": c.word[:32], "description": c.description[:128]} for c in listed]
    if catalog is not None:
        commands += [
            {"title": word[:32], "description": f"Fill in the whole {catalog.flow(name).title} form at once"}
            for name in catalog.form_flows()
            for word in sorted(catalog.flow(name).form_words)[:1]
        ]
    commands = [*commands, {"title": "help", "description": "What I can do"}][:10]
    return {
        "$schema": MANIFEST_SCHEMA,
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": app_id,
        "developer": {
            "name": developer,
            "websiteUrl": website_url,
            "privacyUrl": privacy_url or website_url.rstrip("/") + "/privacy",
            "termsOfUseUrl": terms_url or website_url.rstrip("/") + "/terms",
        },
        "name": {"short": short_name, "full": "BRM Bot: demand intake for Business Relationship Management"},
        "description": {
            "short": "Capture demand requests and follow them up with your BRM team.",
            "full": (
                "File demand requests in a personal chat or with one form, turn any message into a request "
                "with “Capture as demand request”, and see the status of your requests. The BRM who owns "
                "your business partner is notified of every new request."
            ),
        },
        "icons": {"color": COLOR_ICON, "outline": OUTLINE_ICON},
        "accentColor": "#4B53BC",
        "bots": [
            {
                "botId": app_id,
                "scopes": list(BOT_SCOPES),
                "isNotificationOnly": False,
                "supportsFiles": False,
                "commandLists": [{"scopes": list(BOT_SCOPES), "commands": commands}],
            }
        ],
        "composeExtensions": [
            {
                "botId": app_id,
                "commands": [
                    {
                        "id": CAPTURE_COMMAND,
                        "type": "action",
                        "title": CAPTURE_TITLE,
                        "description": "Turn this message into a demand request, with a link back to it",
                        "context": ["message"],
                        "fetchTask": True,
                    },
                    *(
                        {
                            "id": shortcut.id,
                            "type": "action",
                            "title": shortcut.label[:32],
                            "description": shortcut.description[:128],
                            "context": ["message"],
                            "fetchTask": True,
                        }
                        for shortcut in (catalog.shortcuts() if catalog is not None else ())
                    ),
                ],
            }
        ],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [],
    }


def icon(name: str) -> bytes:
    return resources.files("adapters.teams").joinpath("assets", name).read_bytes()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (``ValueError`` if it is not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def check_app_id(app_id: str | None) -> str:
    if not app_id:
        raise PackageError(
            "MICROSOFT_APP_ID is not set: the package needs the bot's app id (the Microsoft App ID of the Azure "
            "Bot resource). Set it in the environment or .env and run the command again.",
            field="app_id",
        )
    try:
        return str(uuid.UUID(app_id.strip()))
    except ValueError:
        raise PackageError(
            f"MICROSOFT_APP_ID: {app_id!r} is not an app id (a GUID such as 00000000-0000-...)", field="app_id"
        ) from None


def check(content: dict[str, Any]) -> None:
    """Refuse a manifest Teams would refuse at upload, naming the field that is wrong."""
    try:
        uuid.UUID(content["id"])
    except ValueError:
        raise PackageError(f"{content['id']!r} is not an app id (a GUID)", field="app_id") from None
    version = content["version"]
    if not SEMVER.match(version):
        raise PackageError(f"{version!r} is not a version of the form 1.0.0 (three numbers)", field="version")
    short = content["name"]["short"]
    if not short.strip() or len(short) > SHORT_NAME_MAX:
        raise PackageError(f"{short!r}: the app's name needs 1 to {SHORT_NAME_MAX} characters", field="name")
    developer = content["developer"]
    if not developer["name"].strip() or len(developer["name"]) > DEVELOPER_NAME_MAX:
        raise PackageError(
            f"{developer['name']!r}: the developer's name needs 1 to {DEVELOPER_NAME_MAX} characters",
            field="developer",
        )
    for field, key in (("website_url", "websiteUrl"), ("privacy_url", "privacyUrl"), ("terms_url", "termsOfUseUrl")):
        url = developer[key]
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or len(url) > URL_MAX or any(c.isspace() for c in url):
            raise PackageError(f"Teams needs an https:// address, not {url!r}", field=field)


def build_package(out: Path, *, app_id: str | None, replace: bool = False, **manifest_options: Any) -> Path:
    """Write the zip Teams accepts (manifest and icons at its root) to ``out``.

    An existing file is replaced only with ``replace=True``, and only if it is a regular file.
    The zip is written beside ``out`` and moved into place, so a failure leaves no half-written
    package (and never a changed old one).
    """
    checked = check_app_id(app_id)
    content = manifest(app_id=checked, **manifest_options)
    check(content)
    for name, size in ICON_SIZES.items():
        if png_size(icon(name)) != size:
            raise PackageError(f"the {name} icon must be {size[0]}x{size[1]} pixels")
    if out.exists() or out.is_symlink():
        if not out.is_file():
            raise PackageError(f"{out} exists and is not a regular file: choose a .zip path", field="out")
        if not replace:
            raise PackageError(f"{out} already exists (pass --force to replace it)", field="out")
    folder = next((p for p in (out.parent, *out.parent.parents) if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise PackageError(f"cannot write {out}: {folder} is a file, not a folder", field="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as file, zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(content, indent=2, ensure_ascii=False))
            for name in ICON_SIZES:
                archive.writestr(name, icon(name))
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out
