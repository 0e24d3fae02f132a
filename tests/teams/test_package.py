"""The Teams app package an admin uploads, and the ``brm-bot teams`` commands."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from adapters.teams import PackageError, build_package
from conversations.catalog import Catalog
from conversations.flows import default_flows
from tests.bot.test_cli import run

APP_ID = "9e2b0f6a-0c5d-4b3e-8d1a-6f7e5c4b3a21"


def _pixels(png: bytes) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Decode an 8-bit RGBA, non-interlaced PNG (what Teams wants) into its pixels."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, color_type, interlace) == (8, 6, 0)
    raw = zlib.decompress(idat)
    stride, rows, previous = width * 4, [], bytearray(width * 4)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - 4] if i >= 4 else 0
            up, corner = previous[i], (previous[i - 4] if i >= 4 else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.extend(tuple(line[x * 4 : x * 4 + 4]) for x in range(width))
        previous = line
    return width, height, rows  # type: ignore[return-value]


def _validate(path: Path, app_id: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]  # all at the root
        manifest = json.loads(archive.read("manifest.json"))
        color, outline = archive.read("color.png"), archive.read("outline.png")
    for key in ("$schema", "manifestVersion", "version", "id", "developer", "name", "description", "icons",
                "accentColor"):
        assert manifest[key], key
    assert manifest["manifestVersion"] == "1.22" and "v1.22" in manifest["$schema"]
    for key in ("name", "websiteUrl", "privacyUrl", "termsOfUseUrl"):
        assert manifest["developer"][key]
    assert all(manifest["developer"][k].startswith("https://") for k in ("websiteUrl", "privacyUrl", "termsOfUseUrl"))
    assert len(manifest["name"]["short"]) <= 30 and len(manifest["description"]["short"]) <= 80
    assert len(manifest["description"]["full"]) <= 4000

    [bot] = manifest["bots"]
    [extension] = manifest["composeExtensions"]
    assert manifest["id"] == bot["botId"] == extension["botId"] == app_id
    assert sorted(bot["scopes"]) == ["groupChat", "personal", "team"]
    command, *declared = extension["commands"]
    for each in (command, *declared):
        assert each["type"] == "action" and each["context"] == ["message"] and each["fetchTask"] is True
        assert len(each["title"]) <= 32 and len(each["description"]) <= 128 and len(each["id"]) <= 64
    assert command["title"] == "Capture as demand request"
    assert len({c["id"] for c in extension["commands"]}) == len(extension["commands"])
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}

    width, height, pixels = _pixels(color)
    assert (width, height) == (192, 192)
    width, height, pixels = _pixels(outline)
    assert (width, height) == (32, 32)
    assert all(p[3] == 0 or p[:3] == (255, 255, 255) for p in pixels)  # white on transparent
    assert any(p[3] == 0 for p in pixels) and any(p[3] == 255 for p in pixels)
    return manifest


def test_the_package_holds_a_valid_manifest_and_icons(tmp_path: Path) -> None:
    out = build_package(tmp_path / "brm-bot-teams.zip", app_id=APP_ID)
    _validate(out, APP_ID)


def test_the_package_offers_log_as_touchpoint_on_any_message(tmp_path: Path) -> None:
    out = build_package(tmp_path / "brm-bot-teams.zip", app_id=APP_ID, catalog=Catalog(default_flows()))
    [extension] = _validate(out, APP_ID)["composeExtensions"]
    titles = {c["id"]: c["title"] for c in extension["commands"]}
    assert titles == {"captureRequest": "Capture as demand request", "log_touchpoint": "Log as touchpoint"}


def test_no_app_id_means_no_package(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="MICROSOFT_APP_ID is not set"):
        build_package(tmp_path / "x.zip", app_id=None)
    with pytest.raises(PackageError, match="is not an app id"):
        build_package(tmp_path / "x.zip", app_id="my-bot")
    assert not (tmp_path / "x.zip").exists()


def test_the_package_command_fills_in_the_bot_id(tmp_path: Path) -> None:
    result = run(
        ["teams", "package", "--out", "brm-bot-teams.zip"],
        tmp_path,
        env={"MICROSOFT_APP_ID": APP_ID, "MICROSOFT_APP_PASSWORD": "not-a-real-secret"},
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote brm-bot-teams.zip" in result.stdout
    _validate(tmp_path / "brm-bot-teams.zip", APP_ID)


def test_the_package_command_says_what_to_set(tmp_path: Path) -> None:
    result = run(["teams", "package", "--out", "brm-bot-teams.zip"], tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # one clear line, no traceback
    assert line.startswith("brm-bot: MICROSOFT_APP_ID is not set")
    assert not (tmp_path / "brm-bot-teams.zip").exists()


def test_unreachable_lists_people_never_seen_in_teams(tmp_path: Path) -> None:
    assert run(["chat", "--demo"], tmp_path, stdin="quit\n").returncode == 0
    result = run(["teams", "unreachable"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "7 people cannot be messaged privately in Teams" in result.stdout
    assert "Alice Moreno <alice@example.com>: never seen in Teams" in result.stdout


TEAMS_ENV = {"MICROSOFT_APP_ID": APP_ID, "MICROSOFT_APP_PASSWORD": "not-a-real-secret"}


def test_the_package_command_writes_the_names_urls_and_version_given(tmp_path: Path) -> None:
    result = run(
        [
            "teams", "package", "--out", "custom.zip",
            "--name", "Demand Desk",
            "--developer", "Contoso IT",
            "--website-url", "https://it.contoso.example/demand",
            "--privacy-url", "https://it.contoso.example/privacy-notice",
            "--terms-url", "https://it.contoso.example/terms-of-use",
            "--version", "2.3.10",
        ],
        tmp_path,
        env=TEAMS_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = _validate(tmp_path / "custom.zip", APP_ID)
    assert manifest["name"]["short"] == "Demand Desk" and manifest["version"] == "2.3.10"
    assert manifest["developer"] == {
        "name": "Contoso IT",
        "websiteUrl": "https://it.contoso.example/demand",
        "privacyUrl": "https://it.contoso.example/privacy-notice",
        "termsOfUseUrl": "https://it.contoso.example/terms-of-use",
    }


def test_an_existing_package_is_replaced_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "brm-bot-teams.zip"
    out.write_bytes(b"an earlier upload")
    refused = run(["teams", "package", "--version", "1.0.1"], tmp_path, env=TEAMS_ENV)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "brm-bot: --out: brm-bot-teams.zip already exists (pass --force to replace it)"
    assert out.read_bytes() == b"an earlier upload"

    forced = run(["teams", "package", "--version", "1.0.1", "--force"], tmp_path, env=TEAMS_ENV)
    assert forced.returncode == 0, forced.stderr
    assert _validate(out, APP_ID)["version"] == "1.0.1"
    assert sorted(p.name for p in tmp_path.iterdir() if "zip" in p.name) == ["brm-bot-teams.zip"]  # no leftovers


@pytest.mark.parametrize(
    ("out", "force", "says"),
    [
        ("/dev/null", False, "brm-bot: --out: /dev/null exists and is not a regular file"),
        ("/dev/null", True, "brm-bot: --out: /dev/null exists and is not a regular file"),
        (".", True, "brm-bot: --out: . exists and is not a regular file"),
        ("a-file/inside.zip", False, "brm-bot: --out: cannot write a-file/inside.zip: a-file is a file, not a folder"),
        ("/proc/brm-bot-teams.zip", False, "brm-bot: --out: cannot write /proc/brm-bot-teams.zip"),
    ],
)
def test_a_path_that_cannot_take_the_package_is_one_line(tmp_path: Path, out: str, says: str, force: bool) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    result = run(["teams", "package", "--out", out, *(["--force"] if force else [])], tmp_path, env=TEAMS_ENV)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(says)
    assert (tmp_path / "a-file").read_text() == "not a folder"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--version", "1.0"], "brm-bot: --version: '1.0' is not a version of the form 1.0.0"),
        (["--version", "1.0.0-beta"], "brm-bot: --version: '1.0.0-beta' is not a version of the form 1.0.0"),
        (["--version", "01.2.3"], "brm-bot: --version: '01.2.3' is not a version of the form 1.0.0"),
        (["--name", ""], "brm-bot: --name: '': the app's name needs 1 to 30 characters"),
        (["--name", "N" * 31], "brm-bot: --name: "),
        (["--developer", "D" * 33], "brm-bot: --developer: "),
        (["--website-url", "http://example.com"], "brm-bot: --website-url: Teams needs an https:// address"),
        (["--privacy-url", "example.com/privacy"], "brm-bot: --privacy-url: Teams needs an https:// address"),
        (["--terms-url", "https://"], "brm-bot: --terms-url: Teams needs an https:// address"),
    ],
)
def test_a_wrong_option_is_one_line_naming_it_and_writes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    result = run(["teams", "package", *args], tmp_path, env=TEAMS_ENV)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(says)
    assert not (tmp_path / "brm-bot-teams.zip").exists()


def test_an_app_id_that_is_not_a_guid_is_refused(tmp_path: Path) -> None:
    result = run(["teams", "package"], tmp_path, env={**TEAMS_ENV, "MICROSOFT_APP_ID": "my-bot"})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("brm-bot: MICROSOFT_APP_ID: 'my-bot' is not an app id")
    assert not (tmp_path / "brm-bot-teams.zip").exists()


def test_the_bot_command_list_comes_from_the_flows_declarations() -> None:
    from adapters.teams.package import manifest
    from conversations.catalog import Catalog
    from conversations.flows import default_flows

    built = manifest(app_id="00000000-0000-4000-8000-000000000001", catalog=Catalog(default_flows()))
    [bot] = built["bots"]
    titles = [c["title"] for c in bot["commandLists"][0]["commands"]]
    assert titles[:3] == ["new request", "my requests", "status"] and "form" in titles and titles[-1] == "help"
    status = next(c for c in bot["commandLists"][0]["commands"] if c["title"] == "status")
    assert "one request and its history" in status["description"]
    assert len(titles) <= 10 and "hello" not in titles
