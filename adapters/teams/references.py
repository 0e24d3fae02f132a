"""Teams conversation references: stored on contact, used for proactive messages.

Teams can only be written to in a conversation the bot has seen, addressed with the full
reference (service URL, tenant, conversation, user, bot) from an inbound activity or an
install. They are stored in the database (never only in memory: a restart must not make
people unreachable):

- scope ``"user"``, target the person's Teams user id (``29:...``): their *personal* chat
  with the bot, from any activity there and from the personal install;
- scope ``"channel"``, target the channel or group chat id: from any activity there and from
  the team install.

A person seen only in channels has no ``user`` reference: messaging them privately would
need the app installed for them, so :func:`unreachable` lists them rather than the bot
posting their private notifications into a channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.db import Database
from storage.models import utcnow

PLATFORM = "teams"
USER = "user"
CHANNEL = "channel"


def reference_json(activity: Mapping[str, Any], *, conversation_id: str) -> dict[str, Any]:
    """The conversation reference of ``activity`` as stored JSON (Bot Framework's shape).

    ``activityId`` is left out, so a proactive message starts a new message (or channel
    post) instead of replying to an old one.
    """
    conversation = dict(activity.get("conversation") or {})
    conversation["id"] = conversation_id
    tenant = ((activity.get("channelData") or {}).get("tenant") or {}).get("id")
    tenant = conversation.get("tenantId") or tenant
    if tenant:
        # Teams sends ``tenantId``; botbuilder-python's model reads and writes ``tenantID``.
        conversation["tenantId"] = conversation["tenantID"] = tenant
    reference: dict[str, Any] = {
        "user": _account(activity.get("from")),
        "bot": _account(activity.get("recipient")),
        "conversation": conversation,
        "channelId": activity.get("channelId") or "msteams",
        "serviceUrl": activity.get("serviceUrl"),
    }
    if activity.get("locale"):
        reference["locale"] = activity["locale"]
    return reference


def _account(account: Any) -> dict[str, Any] | None:
    if not isinstance(account, Mapping):
        return None
    keep = ("id", "name", "aadObjectId", "role")
    return {k: account[k] for k in keep if account.get(k)}


async def save(
    db: Database, *, tenant: str, scope: str, target: str, reference: dict[str, Any], now: datetime | None = None
) -> None:
    """Store a reference. A person's personal chat makes them reachable: messages held for them
    as unreachable (recently) are sent now."""
    now = now or utcnow()
    async with db.transaction() as store:
        await store.references.save(
            platform=PLATFORM, workspace=tenant, scope=scope, target=target, reference=reference, now=now
        )
        if scope == USER:
            person = await store.people.by_identity(platform=PLATFORM, workspace=tenant, user_id=target)
            if person is not None and person.id is not None:
                await store.outbox.reachable_again(recipient_id=person.id, now=now)


async def tenant_of(db: Database, *, scope: str, target: str) -> str | None:
    """The tenant of the stored conversation with ``target``, for an address that names only a
    channel (``BRM_BOT_BRM_CHANNEL=teams:19:…@thread.tacv2``)."""
    async with db.transaction() as store:
        return await store.references.workspace_of(platform=PLATFORM, scope=scope, target=target)


async def load(db: Database, *, tenant: str, scope: str, target: str) -> dict[str, Any] | None:
    async with db.transaction() as store:
        return await store.references.load(platform=PLATFORM, workspace=tenant, scope=scope, target=target)


@dataclass(frozen=True, slots=True)
class UnreachablePerson:
    """Someone the bot cannot message privately in Teams, and why."""

    person_id: int
    name: str
    email: str | None
    reason: str
    other_platforms: tuple[str, ...]


NEVER_SEEN = "never seen in Teams"
NO_PERSONAL_CHAT = "seen in Teams, but not in a personal chat with the bot"


async def unreachable(db: Database) -> Sequence[UnreachablePerson]:
    """Everyone without a personal-chat reference in Teams, with the reason.

    People who have written to the bot only in channels (or through the message extension)
    come first: installing the app for them (or asking them to open a chat with the bot)
    fixes it. People never seen in Teams follow; ``other_platforms`` says whether they are
    reachable elsewhere (e.g. Slack), in which case nothing is lost.
    """
    out: list[UnreachablePerson] = []
    async with db.transaction() as store:
        for person in await store.people.all():
            assert person.id is not None
            identities = await store.people.identities(person.id)
            teams = [i for i in identities if i.platform == PLATFORM]
            others = tuple(sorted({i.platform for i in identities if i.platform != PLATFORM}))
            if not teams:
                out.append(UnreachablePerson(person.id, person.name, person.email, NEVER_SEEN, others))
                continue
            reachable = False
            for identity in teams:
                found = await store.references.load(
                    platform=PLATFORM, workspace=identity.workspace, scope=USER, target=identity.user_id
                )
                reachable = reachable or found is not None
            if not reachable:
                out.append(UnreachablePerson(person.id, person.name, person.email, NO_PERSONAL_CHAT, others))
    out.sort(key=lambda p: (p.reason != NO_PERSONAL_CHAT, p.name.casefold()))
    return out
