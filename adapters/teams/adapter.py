"""The Microsoft Teams adapter: botbuilder's ``CloudAdapter`` at ``POST /api/messages``.

One turn: verify the request (JWT, or loopback-only local mode), store the conversation
reference, turn the activity into a neutral :class:`Inbound`, run the engine, render the
replies as markdown or Adaptive Cards and send them through the Bot Connector, retrying
throttled calls. Invokes (the message extension) are answered with an ``InvokeResponse``
holding a model: botbuilder 4.17 serialises the body itself, and a dict there (as
``ActivityHandler.on_adaptive_card_invoke`` produces behind ``CloudAdapter``) is a 500.

Example::

    teams = TeamsAdapter(engine=runtime.engine, db=runtime.db, config=TeamsConfig(app_id="...", app_password="..."))
    teams.mount(app)                                   # POST /api/messages
    await teams.send(Address("teams", tenant, user="29:1abc"), Reply.text("Your request moved on"))
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

import aiohttp
from aiohttp import web
from botbuilder.core import BotAdapter, InvokeResponse, TurnContext, serializer_helper
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes, Attachment, ConversationReference
from botbuilder.schema.teams import (
    MessagingExtensionActionResponse,
    TaskModuleContinueResponse,
    TaskModuleMessageResponse,
    TaskModuleTaskInfo,
)

from adapters.teams import inbound as teams_in
from adapters.teams import references
from adapters.teams.auth import OPENID_METADATA_URL, KeysUnavailable, TokenValidator
from adapters.teams.connector import (
    RetriesExhausted,
    RetryPolicy,
    ServiceUrlRefused,
    SharedClientsAuthentication,
    http_status,
    with_retries,
)
from adapters.teams.render import (
    CARD_CONTENT_TYPE,
    answered_card,
    card_message,
    form_card,
    render,
    result_card,
    submitted_card,
    welcome_card,
)
from conversations.catalog import FORM_OPEN, QUOTED_LINK
from conversations.engine import Engine
from conversations.messages import (
    Action,
    Address,
    ConversationKey,
    Delivered,
    Form,
    Inbound,
    Platform,
    Reply,
    Sender,
    Source,
)
from conversations.observe import Observer
from conversations.ports import RENDERED, DeliveryError, Unreachable
from storage.db import Database
from storage.models import utcnow
from storage.tx import DATABASE_ERRORS

log = logging.getLogger(__name__)

ROUTE = "/api/messages"
CAPTURE_COMMAND = "captureRequest"
CAPTURE_TITLE = "Capture as demand request"
MAX_REMEMBERED = 50_000
# Teams gives up on an answer after 15 s. No connector call starts after this many seconds
# (each is capped at CALL_SECONDS); replies still waiting then are sent as a follow-up.
TURN_SECONDS = 8.0
DEADLINE = "brm.deadline"
SORRY = "Sorry, something went wrong on my side and nothing was saved. Please try again in a moment."
NOT_YOURS = "That card belongs to someone else, so I left it as it was. Mention me to start your own."
OTHER_TENANT = (
    "Sorry, this bot serves only its own organisation, and your account belongs to another one. "
    "Nothing was saved."
)
NO_TENANTS_WARNING = (
    "Teams: neither MICROSOFT_APP_TENANT_ID nor TEAMS_ALLOWED_TENANTS is set, so nobody is linked to an "
    "existing person by email (any tenant could claim any address); set your tenant id to link them."
)
LOCAL_MODE_WARNING = (
    "TEAMS_LOCAL_MODE is on: /api/messages accepts UNAUTHENTICATED requests and answers only service URLs "
    "on this machine (loopback). Use it with the Bot Framework Emulator or the Agents Playground, never in "
    "production: set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD instead."
)

JSON = Mapping[str, Any]


class _InvokeBase(TypedDict):
    """What every message-extension inbound shares."""

    key: ConversationKey
    event_id: str
    sender: Sender


@dataclass(frozen=True, slots=True)
class TeamsConfig:
    """The bot registration. ``app_id`` None means local mode (no authentication at all)."""

    app_id: str | None = None
    app_password: str | None = field(default=None, repr=False)
    tenant_id: str | None = None
    app_type: str = "MultiTenant"
    local_mode: bool = False
    allowed_tenants: frozenset[str] = frozenset()
    openid_metadata_url: str = OPENID_METADATA_URL

    @property
    def trusted_tenants(self) -> frozenset[str]:
        """Tenants whose people are linked to existing records by email and directory id."""
        return self.allowed_tenants | ({self.tenant_id} if self.tenant_id else frozenset())

    @property
    def single_tenant(self) -> bool:
        return self.app_type == "SingleTenant"

    def __post_init__(self) -> None:
        if self.app_id and self.local_mode:
            raise ValueError("an app id and local mode exclude each other: local mode turns authentication off")
        if not self.app_id and not self.local_mode:
            raise ValueError("Teams needs an app id, or local mode for trying it without Azure")


class _SdkConfiguration:
    """The attribute names botbuilder's ``ConfigurationBotFrameworkAuthentication`` reads."""

    def __init__(self, config: TeamsConfig) -> None:
        self.APP_ID = config.app_id or None
        self.APP_PASSWORD = config.app_password or None
        self.APP_TENANTID = config.tenant_id or None
        self.APP_TYPE = config.app_type if config.app_id else "MultiTenant"


def _activity(message: JSON) -> Activity:
    attachments = [
        Attachment(content_type=a["contentType"], content=a["content"]) for a in message.get("attachments", ())
    ]
    return Activity(
        type=ActivityTypes.message,
        text=message.get("text"),
        text_format=message.get("textFormat"),
        summary=message.get("summary"),
        attachments=attachments or None,
        channel_data=message.get("channelData"),
    )


def _invoke(body: Any, status: int = 200) -> InvokeResponse:
    return InvokeResponse(status=status, body=body)


def _task_message(text: str) -> InvokeResponse:
    return _invoke(MessagingExtensionActionResponse(task=TaskModuleMessageResponse(value=text[:1000])))


def _task_card(title: str, content: dict[str, Any]) -> InvokeResponse:
    info = TaskModuleTaskInfo(
        title=title,
        height="large",
        width="medium",
        card=Attachment(content_type=CARD_CONTENT_TYPE, content=content),
    )
    return _invoke(MessagingExtensionActionResponse(task=TaskModuleContinueResponse(value=info)))


def _error_form(replies: Sequence[Reply]) -> Form | None:
    return next((r.form for r in replies if r.form is not None and r.form.errors), None)


PLATFORM = "teams"


INBOUND_OUTCOMES = {400: "malformed", 415: "malformed", 401: "unauthorized", 403: "forbidden", 503: "busy"}


class TeamsAdapter:
    """Serves Teams on the shared aiohttp app and delivers proactive messages.

    ``http``: the app's shared client session, for the Bot Connector calls (without it, the
    SDK's own ``requests`` transport is used, in worker threads). ``retry``: how throttled
    calls are retried (tests pass one that records instead of sleeping).
    """

    platform: Platform = "teams"

    def __init__(
        self,
        *,
        engine: Engine,
        db: Database,
        config: TeamsConfig,
        retry: RetryPolicy | None = None,
        roster_timeout: float = 3.0,
        http: aiohttp.ClientSession | None = None,
        drain_seconds: float = 25.0,
        observer: Observer | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._observer: Observer = observer or engine.observer
        self._db = db
        self._config = config
        self._retry = retry or RetryPolicy()
        self._roster_timeout = roster_timeout
        self._drain_seconds = drain_seconds
        self._validator = (
            TokenValidator(app_id=config.app_id, metadata_url=config.openid_metadata_url, http=http)
            if config.app_id
            else None
        )
        self._auth = SharedClientsAuthentication(
            ConfigurationBotFrameworkAuthentication(_SdkConfiguration(config)),
            loopback_only=config.local_mode,
            http=http,
            validator=self._validator,
            observer=self._observer,
        )
        self._cloud = CloudAdapter(self._auth)
        self._known: set[str] = set()
        self._saved: dict[tuple[str, str, str], str] = {}
        self._follow_ups: set[asyncio.Task[None]] = set()

    # --- serving -----------------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        app.router.add_post(ROUTE, self.handle)

    async def start(self) -> None:
        """Warn about local mode or an unset tenant; start fetching the token signing keys."""
        if self._config.local_mode:
            log.warning(LOCAL_MODE_WARNING)
        elif not self._config.trusted_tenants:
            log.warning(NO_TENANTS_WARNING)
        if self._validator is not None:
            await self._validator.start()

    async def close(self) -> None:
        """Send the replies still waiting in follow-ups (Teams throttled them), then let go.

        They were acknowledged to Teams, so a clean stop waits up to ``drain_seconds`` for
        them instead of dropping them.
        """
        pending = set(self._follow_ups)
        if pending:
            log.info("sending %d delayed Teams replies before stopping", len(pending))
            _, left = await asyncio.wait(pending, timeout=self._drain_seconds)
            for task in left:
                task.cancel()
            if left:
                log.warning("%d delayed Teams replies were not sent before the stop", len(left))
            await asyncio.gather(*pending, return_exceptions=True)
        if self._validator is not None:
            await self._validator.close()
        await self._auth.close()

    async def idle(self) -> None:
        """Wait until the follow-ups of earlier turns (replies Teams throttled) are sent."""
        while self._follow_ups:
            await asyncio.gather(*list(self._follow_ups), return_exceptions=True)

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /api/messages``: what ``CloudAdapter.process`` does, with friendly refusals.

        ``CloudAdapter.process`` fails with a 500 on a request without ``Content-Type`` and
        cannot refuse a service URL before the turn runs; this handler answers 415, 400 and
        403 instead, then lets the real ``CloudAdapter`` authenticate and run the turn.
        """
        started = time.perf_counter()
        try:
            response = await self._answer(request)
        except Exception:
            self._observer.inbound(PLATFORM, outcome="error")
            raise
        outcome = INBOUND_OUTCOMES.get(response.status, "accepted" if response.status < 400 else "error")
        self._observer.inbound(PLATFORM, outcome=outcome)
        if outcome == "accepted":
            self._observer.ack(PLATFORM, seconds=time.perf_counter() - started)
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        if "application/json" not in request.headers.get("Content-Type", ""):
            return web.json_response({"error": "send the activity as application/json"}, status=415)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict) or not body.get("type"):
            return web.json_response({"error": "the body is not a Bot Framework activity"}, status=400)
        problem = teams_in.shape_problem(body)
        if problem is not None:
            return web.json_response({"error": f"the activity is malformed: {problem}"}, status=400)
        if self._config.local_mode and not teams_in.is_local_service_url(body.get("serviceUrl")):
            log.warning("local mode: refused an activity whose serviceUrl is not a local client's")
            return web.json_response(
                {"error": "TEAMS_LOCAL_MODE answers only service URLs on loopback addresses "
                 "(http://localhost:PORT or http://localhost:PORT/_connector)"},
                status=403,
            )
        try:
            activity = Activity().deserialize(body)
        except Exception:
            return web.json_response({"error": "the body is not a Bot Framework activity"}, status=400)
        auth_header = request.headers.get("Authorization", "")
        deadline = time.monotonic() + TURN_SECONDS

        async def logic(context: TurnContext) -> None:
            context.turn_state[DEADLINE] = deadline
            await self._turn(context, body)

        try:
            invoke = await self._cloud.process_activity(auth_header, activity, logic)
        except ServiceUrlRefused:
            return web.json_response({"error": "service URL refused"}, status=403)
        except PermissionError as exc:
            log.info("refused a request to %s without a valid Bot Framework token (401): %s", ROUTE, exc)
            return web.json_response({"error": "unauthorized"}, status=401)
        except KeysUnavailable:
            log.warning("answered 503: the Bot Framework signing keys are not loaded yet")
            return web.json_response(
                {"error": "the bot is starting; try again"}, status=503, headers={"Retry-After": "5"}
            )
        if invoke is not None:
            # An expectReplies turn's body is already JSON (botbuilder serialises it itself).
            body_out = invoke.body if isinstance(invoke.body, (dict, list)) or invoke.body is None else (
                serializer_helper(invoke.body)
            )
            return web.json_response(body_out, status=int(invoke.status or 200))
        return web.Response(status=201)

    # --- one turn ----------------------------------------------------------------------------------

    def _stranger(self, raw: JSON) -> bool:
        """A person of a tenant this single-tenant app does not serve."""
        if not self._config.single_tenant:
            return False
        return teams_in.tenant_of(raw) not in self._config.trusted_tenants

    async def _turn(self, context: TurnContext, raw: JSON) -> None:
        """One activity; while the database is out, an apology instead of an error (an HTTP 500)."""
        try:
            await self._activity(context, raw)
        except DATABASE_ERRORS as exc:
            kind = raw.get("type")
            log.error("Teams %s not handled: the database is unavailable (%s)", kind, type(exc).__name__)
            if kind == ActivityTypes.invoke:
                response = _task_message(SORRY)
                await context.send_activity(Activity(type=ActivityTypes.invoke_response, value=response))
            elif kind == ActivityTypes.message and (teams_in.is_addressed(raw) or raw.get("value") is not None):
                await self._post(context, [Reply.text(SORRY)], quiet=True)

    async def _activity(self, context: TurnContext, raw: JSON) -> None:
        kind = raw.get("type")
        if self._stranger(raw):
            log.info("refused a Teams %s from a tenant this single-tenant app does not serve", kind)
            if kind == ActivityTypes.invoke:
                response = _task_message(OTHER_TENANT)
                await context.send_activity(Activity(type=ActivityTypes.invoke_response, value=response))
            elif kind == ActivityTypes.message and teams_in.is_addressed(raw):
                await self._post(context, [Reply.text(OTHER_TENANT)], quiet=True)
            return
        if self._removal(raw):
            await self._on_removed(raw)
            return
        await self._remember(raw)
        if kind == ActivityTypes.message:
            await self._on_message(context, raw)
        elif kind == ActivityTypes.invoke:
            try:
                response = await self._on_invoke(context, raw)
            except Exception:
                log.exception("Teams invoke %s failed", raw.get("name"))
                response = _task_message(SORRY)
            await context.send_activity(Activity(type=ActivityTypes.invoke_response, value=response))
        elif kind == ActivityTypes.conversation_update:
            await self._on_conversation_update(context, raw)

    @staticmethod
    def _removal(raw: JSON) -> bool:
        """The app was uninstalled (``installationUpdate`` remove) or the bot removed from a conversation."""
        if raw.get("type") == "installationUpdate":
            return str(raw.get("action") or "").startswith("remove")
        if raw.get("type") == ActivityTypes.conversation_update:
            bot_id = (raw.get("recipient") or {}).get("id")
            return any(m.get("id") == bot_id for m in raw.get("membersRemoved") or ())
        return False

    async def _on_removed(self, raw: JSON) -> None:
        """Stop sending there: forget the conversation reference; in a personal chat, the person is
        marked unreachable, so what is queued for them ends as ``unreachable`` instead of retrying."""
        tenant = teams_in.key_of(raw).workspace
        user = str((raw.get("from") or {}).get("id") or "")
        conversation_id = str((raw.get("conversation") or {}).get("id") or "")
        async with self._db.transaction() as store:
            if teams_in.is_personal(raw):
                await store.references.forget(platform=PLATFORM, workspace=tenant, scope=references.USER, target=user)
                marked = await store.people.mark_unreachable(
                    platform=PLATFORM, workspace=tenant, user_ids=[user], now=self._clock()
                )
            else:
                channel = teams_in.split_conversation(conversation_id)[0]
                await store.references.forget(
                    platform=PLATFORM, workspace=tenant, scope=references.CHANNEL, target=channel
                )
                marked = 0
        self._saved = {k: v for k, v in self._saved.items() if k[0] != tenant or k[2] not in (user, conversation_id)}
        log.info("Teams: the app was removed from a conversation; %d people are now unreachable", marked,
                 extra={"platform": PLATFORM, "event_id": teams_in.event_id_of(raw)})

    async def _remember(self, raw: JSON) -> None:
        """Store the conversation reference: per person (personal chat) or per channel."""
        user = (raw.get("from") or {}).get("id")
        conversation_id = (raw.get("conversation") or {}).get("id")
        if not user or not conversation_id or not raw.get("serviceUrl"):
            return
        tenant = teams_in.key_of(raw).workspace
        if teams_in.is_personal(raw):
            scope, target, conversation = references.USER, str(user), str(conversation_id)
        else:
            conversation = teams_in.split_conversation(str(conversation_id))[0]
            scope, target = references.CHANNEL, conversation
        fingerprint = f"{raw.get('serviceUrl')}|{conversation}|{(raw.get('recipient') or {}).get('id')}"
        slot = (tenant, scope, target)
        if self._saved.get(slot) == fingerprint:
            return
        reference = references.reference_json(raw, conversation_id=conversation)
        await references.save(
            self._db, tenant=tenant, scope=scope, target=target, reference=reference, now=self._clock()
        )
        if len(self._saved) > MAX_REMEMBERED:
            self._saved.clear()
        self._saved[slot] = fingerprint

    async def _sender(self, context: TurnContext, raw: JSON, key: ConversationKey) -> Sender:
        """Who is writing; on first contact with their email from the roster.

        Email and directory id only for people of a trusted tenant: a stranger tenant's user
        whose directory says ``alice@example.com`` is a new requester, not Alice.
        """
        trusted = self._config.trusted_tenants
        if teams_in.tenant_of(raw) not in trusted and not (self._config.local_mode and not trusted):
            return teams_in.sender_of(raw, trusted=False)
        if key.user in self._known or await self._engine.known(
            platform="teams", workspace=key.workspace, user_id=key.user
        ):
            self._remember_known(key.user)
            return teams_in.sender_of(raw)
        return teams_in.sender_of(raw, email=await self._roster_email(context, key.user))

    def _remember_known(self, user: str) -> None:
        if len(self._known) > MAX_REMEMBERED:
            self._known.clear()
        self._known.add(user)

    async def _roster_email(self, context: TurnContext, user_id: str) -> str | None:
        connector = context.turn_state.get(BotAdapter.BOT_CONNECTOR_CLIENT_KEY)
        conversation_id = context.activity.conversation.id if context.activity.conversation else None
        if connector is None or not conversation_id:
            return None
        try:
            member = await asyncio.wait_for(
                connector.conversations.get_conversation_member(conversation_id, user_id), self._roster_timeout
            )
        except Exception as exc:
            log.info("Teams roster look-up failed (%s); matching by Azure AD id only", type(exc).__name__)
            return None
        extra = getattr(member, "additional_properties", None) or {}
        for candidate in (extra.get("email"), extra.get("userPrincipalName")):
            if candidate and "@" in candidate:
                return str(candidate).strip().lower()
        return None

    async def _handle(self, inbound: Inbound) -> list[Reply]:
        replies = await self._engine.handle(inbound)
        self._remember_known(inbound.key.user)
        return replies

    @staticmethod
    def _owner(raw: JSON) -> str | None:
        """Whose cards these are: in a channel or group chat, the person the bot answers."""
        return None if teams_in.is_personal(raw) else teams_in.key_of(raw).user

    async def _on_message(self, context: TurnContext, raw: JSON) -> None:
        submission = teams_in.read_card_value(raw.get("value"))
        if submission is None and not teams_in.is_addressed(raw):
            return  # channel talk that is not for the bot
        owner = self._owner(raw)
        if submission is not None and submission.owner is not None and submission.owner != owner:
            await self._not_yours(raw)
            return
        try:
            replies, card = await self._message_turn(context, raw, submission)
        except Exception:
            log.exception("Teams message turn failed", extra={
                "platform": PLATFORM, "event_id": teams_in.event_id_of(raw), "conversation_key": teams_in.key_of(raw),
            })
            await self._post(context, [Reply.text(SORRY)], quiet=True)
            return
        if card is not None:
            await self._update_card(context, raw, card)
        await self._post(context, replies, quiet=True, owner=owner)

    async def _not_yours(self, raw: JSON) -> None:
        """Someone pressed another member's card: tell them in their personal chat, change nothing.

        Teams has no private replies in a channel, so the answer goes to the presser's
        personal chat with the bot when there is one; the card and the owner's answers stay.
        """
        presser = str((raw.get("from") or {}).get("id") or "")
        tenant = teams_in.key_of(raw).workspace
        try:
            await self.send(Address("teams", tenant, user=presser), Reply.text(NOT_YOURS))
        except (Unreachable, DeliveryError) as exc:
            log.info("a Teams card was pressed by someone else than its owner; could not tell them: %s", exc)

    async def _message_turn(
        self, context: TurnContext, raw: JSON, submission: teams_in.Submission | None
    ) -> tuple[list[Reply], dict[str, Any] | None]:
        """The engine's replies to a message, and what the pressed card becomes (if anything)."""
        key = teams_in.key_of(raw)
        base: dict[str, Any] = {
            "key": key,
            "event_id": teams_in.event_id_of(raw),
            "sender": await self._sender(context, raw, key),
        }
        if isinstance(submission, teams_in.Pressed):
            replies = await self._handle(Inbound(**base, action=Action(submission.choice_id, submission.value)))
            if any(reply.refused_action for reply in replies):
                return replies, None  # the card keeps its buttons for those who may press them
            ignored = any(reply.ignored_action for reply in replies)
            note = "No longer active" if ignored else f"✓ {submission.label}"
            return replies, (answered_card(submission.prompt, note) if replies else None)
        if isinstance(submission, teams_in.Submitted):
            done = submitted_card(submission.title or "Form")
            replies = await self._handle(Inbound(**base, action=Action(submission.form_id), form=submission.values))
            if not replies:
                return [], None
            if all(reply.ignored_action for reply in replies):
                return [], done  # the form was filed before (the engine knows its token): it only shows as sent
            refused = _error_form(replies)
            if refused is not None:
                return [r for r in replies if r.form is None], form_card(refused, owner=self._owner(raw))
            return replies, done
        if isinstance(submission, teams_in.OpenForm):
            return await self._handle(Inbound(**base, action=Action(submission.form_id), form={})), None
        text = teams_in.message_text(raw)
        if text.casefold() in self._engine.catalog.form_words():
            return await self._handle(Inbound(**base, action=Action(self._form_open()), form={})), None
        source = Source(channel=None if key.channel == teams_in.PERSONAL else key.channel)
        return await self._handle(Inbound(**base, text=text, source=source)), None

    async def _on_invoke(self, context: TurnContext, raw: JSON) -> InvokeResponse:
        """A message extension action: "Capture as demand request" (the intake's form) or one a
        flow declares (``Command.shortcut``, say "Log as touchpoint"), each opening its form."""
        name = raw.get("name")
        value = raw.get("value") or {}
        if name not in ("composeExtension/fetchTask", "composeExtension/submitAction"):
            return _invoke(None, 200)
        command = str(value.get("commandId") or "")
        catalog = self._engine.catalog
        declared = catalog.shortcut_flow(command) if command != CAPTURE_COMMAND else None
        if command != CAPTURE_COMMAND and declared is None:
            return _task_message("I don't know that command.")
        title = next((s.label for s in catalog.shortcuts() if s.id == command), CAPTURE_TITLE)
        key = teams_in.key_of(raw)
        base: _InvokeBase = {
            "key": key,
            "event_id": teams_in.event_id_of(raw),
            "sender": await self._sender(context, raw, key),
        }
        if name == "composeExtension/fetchTask":
            if declared is not None:
                prefill = teams_in.quoted_prefill(raw)
                form_open = Action(f"{declared}:{FORM_OPEN}")
                source = Source(channel=None, link=prefill.get(QUOTED_LINK))
            else:
                prefill = teams_in.capture_prefill(raw)
                form_open = Action(self._form_open())
                source = Source(channel=prefill.get("source_channel"), link=prefill.get("source_link"))
            replies = await self._handle(Inbound(**base, action=form_open, form=prefill, source=source))
            form = next((r.form for r in replies if r.form is not None), None)
            if form is None and replies:  # refused (say, not a BRM): the answer says why
                return _task_card(title, result_card(replies))
            if form is None:
                return _task_message("That request was already answered. Please try again.")
            return _task_card(title, form_card(form))
        submission = teams_in.read_card_value(value.get("data"))
        if not isinstance(submission, teams_in.Submitted):
            return _task_message("That form is not one I know.")
        replies = await self._handle(Inbound(**base, action=Action(submission.form_id), form=submission.values))
        if not replies:
            return _task_message("I already received this request.")
        refused = _error_form(replies)
        if refused is not None:
            return _task_card(title, form_card(refused))
        return _task_card(title, result_card(replies))

    async def _on_conversation_update(self, context: TurnContext, raw: JSON) -> None:
        bot_id = (raw.get("recipient") or {}).get("id")
        if not any(m.get("id") == bot_id for m in raw.get("membersAdded") or ()):
            return
        personal = teams_in.is_personal(raw)
        if personal:  # installed (again): the person can be messaged
            user = str((raw.get("from") or {}).get("id") or "")
            async with self._db.transaction() as store:
                await store.people.mark_reachable(
                    platform=PLATFORM, workspace=teams_in.key_of(raw).workspace, user_ids=[user]
                )
        text = await self._engine.welcome(
            teams_in.key_of(raw), event_id="install:" + teams_in.event_id_of(raw), personal=personal
        )
        if text is None:  # a repeated install event: the engine claimed it before
            return
        button = "Open the request form" if personal and self._engine.catalog.form_flows() else None
        form_id = self._form_open() if button else None
        message = card_message(welcome_card(text, form_button=button, form_id=form_id), "Welcome")
        await self._send(context, [message], quiet=True)

    def _form_open(self) -> str:
        """The action that opens the form of the flow that declared one (the intake's)."""
        return f"{self._engine.catalog.form_flows()[0]}:{FORM_OPEN}"

    # --- output ----------------------------------------------------------------------------------

    async def _post(
        self, context: TurnContext, replies: Sequence[Reply], *, quiet: bool = False, owner: str | None = None
    ) -> None:
        messages = [m for reply in replies for m in render(reply, owner=owner)]
        await self._send(context, messages, quiet=quiet)

    async def _send(self, context: TurnContext, messages: Sequence[JSON], *, quiet: bool = False) -> list[str | None]:
        """Send ``messages`` in order, retrying throttled calls.

        Inside a turn (``quiet``), what cannot be sent before the turn's deadline goes to the
        outbox (:meth:`_hand_over`), which sends it into the same conversation once Teams lets it,
        after a restart too.
        """
        deadline: float | None = context.turn_state.get(DEADLINE)
        ids: list[str | None] = []
        for index, message in enumerate(messages):
            if deadline is not None and time.monotonic() > deadline:
                await self._hand_over(context, messages, first=index, delay=0.0)
                break
            activity = _activity(message)
            try:
                sent = await with_retries(
                    functools.partial(context.send_activity, activity), self._retry, deadline=deadline
                )
            except RetriesExhausted as exc:
                if not quiet:
                    raise
                await self._hand_over(context, messages, first=index, delay=exc.retry_after or self._retry.cap)
                break
            except Exception:
                if not quiet:
                    raise
                log.warning("a Teams reply could not be sent", exc_info=True)
                continue
            ids.append(sent.id if sent is not None else None)
        return ids

    async def _hand_over(self, context: TurnContext, messages: Sequence[JSON], *, first: int, delay: float) -> None:
        """Queue ``messages[first:]`` in the outbox as one reply to this activity (its id is the
        unique key), due after ``delay``: the delivery worker sends it with backoff, and a
        restart meanwhile loses nothing. Only when the sender is not a known person (no row to
        address it to) does an in-memory follow-up send it instead."""
        raw = context.activity.serialize()
        key = teams_in.key_of(raw)
        reference = TurnContext.get_conversation_reference(context.activity)
        reference.activity_id = None
        subject = f"{PLATFORM}:{teams_in.event_id_of(raw)}"
        now = self._clock()
        try:
            async with self._db.transaction() as store:
                person = await store.people.by_identity(platform=PLATFORM, workspace=key.workspace, user_id=key.user)
                if person is not None and person.id is not None:
                    payload = rendered_reply(reference.serialize(), messages[first:], key=subject, first=first,
                                             recipient=person.id)
                    await store.outbox.enqueue(kind=REPLY_KIND, subject=f"{subject}:{first}", recipient_id=person.id,
                                               payload=payload, now=now, due=now + timedelta(seconds=delay))
                    log.info("Teams is slow or throttling: %d replies wait in the outbox for %.1f s",
                             len(messages) - first, delay)
                    return
        except DATABASE_ERRORS:
            log.warning("the outbox could not take a throttled Teams reply; it follows from memory")
        self._follow_up(context, messages[first:], delay=delay)

    async def send_rendered(self, payload: Mapping[str, Any]) -> Delivered:
        """Send a reply :meth:`_hand_over` queued, into its conversation, as it was rendered.

        When Teams stops it part-way, what went is done and the rest is queued as a reply of its
        own (so nothing is sent twice), and this one counts as sent.
        """
        reference = ConversationReference().deserialize(payload["reference"])
        if self._config.local_mode and not teams_in.is_local_service_url(reference.service_url):
            raise Unreachable("local mode sends only to service URLs on this machine")
        activities: list[JSON] = list(payload["activities"])
        ids: list[str | None] = []

        async def logic(context: TurnContext) -> None:
            context.activity.id = None
            for message in activities:
                sent = await with_retries(functools.partial(context.send_activity, _activity(message)), self._retry)
                ids.append(sent.id if sent is not None else None)

        try:
            await self._cloud.continue_conversation(reference, logic, self._config.app_id or "")
        except Exception as exc:
            error = _delivery_error(exc)
            if not ids:
                raise error from None
            first = int(payload.get("first", 0)) + len(ids)
            rest = rendered_reply(payload["reference"], activities[len(ids):], key=str(payload["key"]), first=first,
                                  recipient=int(payload["recipient"]))
            now = self._clock()
            async with self._db.transaction() as store:
                await store.outbox.enqueue(kind=REPLY_KIND, subject=f"{payload['key']}:{first}",
                                           recipient_id=int(payload["recipient"]), payload=rest, now=now,
                                           due=now + timedelta(seconds=error.retry_after or 0))
        return Delivered(next((i for i in ids if i), None))

    def _follow_up(self, context: TurnContext, messages: Sequence[JSON], *, delay: float) -> None:
        """Send ``messages`` after the turn, into the same conversation, once ``delay`` has passed."""
        reference = TurnContext.get_conversation_reference(context.activity)
        reference.activity_id = None
        log.info("Teams is slow or throttling: %d replies follow in %.1f s", len(messages), delay)

        async def later() -> None:
            await self._retry.sleep(delay)

            async def logic(follow: TurnContext) -> None:
                follow.activity.id = None
                await self._send(follow, messages)

            try:
                await self._cloud.continue_conversation(reference, logic, self._config.app_id or "")
            except Exception as exc:
                log.warning("a Teams follow-up could not be sent: %s %s", type(exc).__name__, http_status(exc)[0])

        task = asyncio.create_task(later())
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    async def _update_card(self, context: TurnContext, raw: JSON, content: dict[str, Any]) -> None:
        """Replace the card whose button was pressed, so it cannot be submitted again."""
        target = raw.get("replyToId")
        if not target:
            return
        activity = _activity(card_message(content))
        activity.id = str(target)
        try:
            await with_retries(
                lambda: context.update_activity(activity), self._retry, deadline=context.turn_state.get(DEADLINE)
            )
        except Exception as exc:
            log.warning("updating the pressed Teams card failed: %s %s", type(exc).__name__, http_status(exc)[0])

    # --- proactive ----------------------------------------------------------------------------------

    async def send(self, to: Address, reply: Reply) -> Delivered:
        """Message a person's personal chat (``to.user``) or a channel (``to.channel``).

        Raises :class:`Unreachable` when the bot has no conversation with them yet, and
        :class:`DeliveryError` (with ``retry_after`` when Teams gave one) when Teams keeps
        refusing.
        """
        scope, target = (references.USER, to.user) if to.user else (references.CHANNEL, to.channel)
        if not target:
            raise Unreachable("no Teams user or channel given")
        tenant_id = to.workspace or await references.tenant_of(self._db, scope=scope, target=target) or ""
        stored = await references.load(self._db, tenant=tenant_id, scope=scope, target=target)
        if stored is None:
            what = "personal chat with this person" if scope == references.USER else "conversation in this channel"
            raise Unreachable(
                f"the bot has no Teams {what} yet: they need to install the app or write to the bot once"
            )
        reference = ConversationReference().deserialize(stored)
        if self._config.local_mode and not teams_in.is_local_service_url(reference.service_url):
            raise Unreachable("local mode sends only to service URLs on this machine")
        tenant = reference.conversation.tenant_id if reference.conversation else None
        messages = [{**m, "channelData": {"tenant": {"id": tenant}}} if tenant else m for m in render(reply)]
        ids: list[str | None] = []

        async def logic(context: TurnContext) -> None:
            # The SDK's continuation activity has a made-up id that would turn every message into
            # a reply to it; without one, Teams gets a plain new message (a new post in a channel).
            context.activity.id = None
            ids.extend(await self._send(context, messages))

        try:
            await self._cloud.continue_conversation(reference, logic, self._config.app_id or "")
        except Exception as exc:
            raise _delivery_error(exc) from None
        return Delivered(next((i for i in ids if i), None))


REPLY_KIND = "reply"


def rendered_reply(
    reference: Mapping[str, Any], activities: Sequence[JSON], *, key: str, first: int, recipient: int
) -> dict[str, Any]:
    """The outbox payload of a reply Teams throttled: where it goes and what it says, as rendered."""
    return {RENDERED: PLATFORM, "reference": dict(reference), "activities": list(activities), "key": key,
            "first": first, "recipient": recipient}


def _delivery_error(exc: Exception) -> DeliveryError:
    """What a failed Bot Connector call means for the outbox: unreachable, or try again (when Teams said)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, RetriesExhausted):
        return DeliveryError(str(exc), retry_after=exc.retry_after)
    if isinstance(exc, ServiceUrlRefused):
        return Unreachable(str(exc))
    status, retry_after = http_status(exc)
    if status in (403, 404):
        return Unreachable(f"Teams refused the message (HTTP {status}): the app was removed or the bot blocked")
    return DeliveryError(
        f"sending to Teams failed ({type(exc).__name__}{f', HTTP {status}' if status else ''})",
        retry_after=retry_after,
    )

