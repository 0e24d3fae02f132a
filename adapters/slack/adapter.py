"""The Slack adapter: slack-bolt's ``AsyncApp`` on our aiohttp server (or a Socket Mode socket).

Every listener acknowledges Slack first and then does the slow work (the engine's
transaction, the Web API calls), so Slack always has its answer within 3 seconds. The one
exception is a modal submission: Slack wants the field errors in the acknowledgement itself,
so the engine runs before ``ack`` there (one short transaction).

Nothing on the way to the acknowledgement waits on the network: the signature is checked here
(bolt's own check is off, so a refused request is logged by size and reason, never its body),
and bolt is given an ``authorize`` function that answers from what ``auth.test`` said at
start instead of calling it on the first request. Acknowledged events and button presses are
written to a local :class:`~adapters.slack.journal.Journal` before the answer, so a process
killed before their work ran does it at the next start; at most ``queue_limit`` pieces of
work wait or run at once, and past that Slack gets 503 and sends the request again later.

A retried event never runs twice: the engine claims every event id in the turn's own
transaction (App Home refreshes too, through ``engine.home(..., event_id=)``); the adapter
writes nothing to the database itself.

Example::

    slack = SlackAdapter(engine, bot_token=token, signing_secret=secret, http=session, clock=utcnow)
    slack.mount(web_app)          # POST /slack/events
    await slack.start()
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.async_app import AsyncAck, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import RateLimits, retry_after, sdk_logger, web_client, webhook_client
from adapters.slack.features import Features
from adapters.slack.inbound import (
    CAPTURE_SHORTCUT,
    COMMAND,
    PLATFORM,
    ModalPlace,
    command_words,
    encode_metadata,
    event_id,
    malformed,
    team_of,
    to_inbound,
)
from adapters.slack.journal import Journal
from adapters.slack.render import (
    Message,
    answered,
    errors_fit,
    field_errors,
    messages,
    owner_of,
    render_home,
    render_modal,
)
from conversations.catalog import Catalog
from conversations.engine import MENU, Engine
from conversations.messages import (
    Address,
    ConversationKey,
    Delivered,
    Form,
    Inbound,
    Platform,
    Reply,
    Sender,
    TextStyle,
)
from conversations.observe import Observer
from conversations.ports import DeliveryError, PlatformRefused, Unreachable
from storage.tx import DATABASE_ERRORS

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
DM_SCOPE = "dm"
CACHE_SIZE = 10_000
RECHECK_PROFILE = timedelta(hours=1)  # a profile without an email is looked up again after this
CLOSE_GRACE_SECONDS = 10.0
WORK_SLOTS = 16  # workers for acknowledged events; the rest wait in the queue (see _later)
QUEUE_LIMIT = 2000  # acknowledged pieces of work waiting or running; past it Slack gets 503
AUTH_TIMEOUT_SECONDS = 10.0
AUTH_RETRY_SECONDS = 30.0
MARK_PATIENCE_SECONDS = 10.0
SIGNATURE_MAX_AGE_SECONDS = 5 * 60
OUTBOX_EVENT = "brm_bot_outbox"  # message metadata event_type: which outbox message a post delivers
HISTORY_LIMIT = 50  # messages read back when looking for an earlier attempt's post
CLOCK_MARGIN = timedelta(minutes=1)  # our clock and Slack's may differ a little
JOURNALED = frozenset({"event_callback", "block_actions"})
ENTRY = "brm_journal_entry"
_entry: contextvars.ContextVar[int | None] = contextvars.ContextVar("slack_journal_entry", default=None)
UNREACHABLE_ERRORS = frozenset(
    {
        "channel_not_found", "user_not_found", "not_in_channel", "is_archived", "account_inactive",
        "cannot_dm_bot", "users_not_found", "user_disabled", "user_not_visible", "team_access_not_granted",
        "messages_tab_disabled",
    }
)
REFUSED_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type"}
)
def slash_help(catalog: Catalog) -> str:
    """``/brm``'s help, from the verbs the flows declared."""
    return (
        catalog.slash_help("/brm")
        + "\nOn any message: ⋮ → *Capture as demand request*. Or write to me in a direct message, "
        "or mention me in a channel."
    )
NOT_YOURS = "Those buttons answer someone else's question. Mention me to start your own."
SORRY = "Sorry, something went wrong on my side and I could not finish that. Please try again in a minute."


class _Bounded(dict[Any, Any]):
    """A dict that forgets its oldest entries beyond ``size`` (caches of ids, never unbounded)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > self._size:
            del self[next(iter(self))]


@dataclasses.dataclass(slots=True)
class _Job:
    """Work queued after an ack, and whom to tell if it fails."""

    what: str
    run: Callable[[], Awaitable[None]]
    apologise_to: tuple[str, str | None] | None
    respond_to: object
    entry: int | None = None
    inbound: Inbound | None = None  # for the log lines' context


INBOUND_OUTCOMES = {401: "unauthorized", 400: "malformed", 503: "busy"}


class SlackAdapter:
    """Slack for the engine: chat, buttons, the ``/brm`` command, a shortcut, modals, App Home.

    One per process. ``http`` is the bot's shared aiohttp session; ``api_url`` points at a
    GovSlack-style host or a test fake; with ``app_token`` the adapter talks to Slack over
    Socket Mode and serves no URL. ``journal`` (owned by the adapter from here on, closed by
    :meth:`close`) keeps acknowledged work across a crash; ``queue_limit`` bounds the work
    acknowledged and not yet done.
    """

    platform: Platform = PLATFORM

    def __init__(
        self,
        engine: Engine,
        *,
        bot_token: str,
        signing_secret: str,
        http: aiohttp.ClientSession,
        clock: Callable[[], datetime],
        api_url: str | None = None,
        app_token: str | None = None,
        path: str = EVENTS_PATH,
        journal: Journal | None = None,
        queue_limit: int = QUEUE_LIMIT,
        observer: Observer | None = None,
    ) -> None:
        self._engine = engine
        self._observer: Observer = observer or engine.observer
        self._http = http
        self._clock = clock
        self._path = path
        self._app_token = app_token
        self._bot_token = bot_token
        self._verifier = SignatureVerifier(signing_secret)
        self._journal = journal
        self._queue_limit = queue_limit
        self._outstanding = 0
        self._queued_entries: set[int] = set()
        self.rate_limits = RateLimits()
        self.client = web_client(
            bot_token, api_url=api_url, http=http, rate_limits=self.rate_limits, observer=self._observer
        )
        # Proactive messages have the delivery worker's retries: a 429 goes back to it at once.
        self._proactive = web_client(
            bot_token, api_url=api_url, http=http, rate_limits=self.rate_limits, patience=0, observer=self._observer
        )
        self._auth: dict[str, Any] = {}
        self._auth_task: asyncio.Task[None] | None = None
        # bolt gets a client without a token and an ``authorize`` that answers from memory: with a
        # token, bolt calls auth.test on the first request it sees, and that request waits for it.
        # Listeners run before the answer (``process_before_response``): they only queue work.
        self.app = AsyncApp(
            client=web_client(None, api_url=api_url, http=http, rate_limits=self.rate_limits, observer=self._observer),
            signing_secret=signing_secret,
            authorize=self._authorizer(),
            request_verification_enabled=False,
            process_before_response=True,
            logger=sdk_logger("adapters.slack.bolt"),
        )
        self.features = Features()
        self._socket: AsyncSocketModeHandler | None = None
        self._known: _Bounded = _Bounded(CACHE_SIZE)
        self._unknown: _Bounded = _Bounded(CACHE_SIZE)  # (team, user) -> when to look a profile up again
        self._dms: _Bounded = _Bounded(CACHE_SIZE)
        self._bot_user_id: str | None = None
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._workers: set[asyncio.Task[None]] = set()
        self._replays: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._removed_from: set[str] = set()  # workspaces that uninstalled the app while this process ran
        self._register()

    # --- ServedAdapter ------------------------------------------------------------------------------

    @property
    def socket_mode(self) -> bool:
        return self._app_token is not None

    def mount(self, app: web.Application) -> None:
        """Serve ``POST /slack/events`` (events, commands, shortcuts, interactivity), unless in Socket Mode."""
        if not self.socket_mode:
            app.router.add_post(self._path, self.handle_http)

    async def start(self) -> None:
        """Check the token (at most ``AUTH_TIMEOUT_SECONDS``, then again in the background), finish
        the work the journal kept from the last run; in Socket Mode, open the socket.

        Raises :class:`PlatformRefused` when Slack refuses the token.
        """
        if not await self._check_token():
            self._auth_task = asyncio.create_task(self._check_token_until_it_answers(), name="slack-auth-test")
        self._replay()
        if self._app_token is not None:
            self._socket = AsyncSocketModeHandler(self.app, self._app_token, web_client=self.client)
            await self._socket.connect_async()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
            log.info("Slack: Socket Mode connected")

    async def _check_token(self) -> bool:
        """``auth.test`` once: True when Slack answered (the bot's user id is then known)."""
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
                auth = await self.client.auth_test()
        except SlackApiError as exc:
            code = _error_code(exc)
            if code in REFUSED_TOKEN:
                raise PlatformRefused(f"SLACK_BOT_TOKEN: Slack refused the token ({code}); see docs/slack.md") from None
            log.error("Slack: checking SLACK_BOT_TOKEN failed (%s); trying again in the background", code)
            return False
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack: cannot reach the Web API yet (%s); trying again in the background", type(exc).__name__)
            return False
        self._auth = dict(auth.data) if isinstance(auth.data, dict) else {}
        self._bot_user_id = self._auth.get("user_id")
        team = self._auth.get("team_id")
        if team:  # the token works again: an uninstall before it was undone (the app installed again)
            self._removed_from.discard(str(team))
            try:
                async with self._engine.db.transaction() as store:
                    await store.people.mark_reachable(platform=PLATFORM, workspace=str(team))
            except DATABASE_ERRORS as exc:  # the database is down: turns will apologise; retried at next start
                log.warning("Slack: could not mark workspace %s reachable again (%s)", team, type(exc).__name__)
        log.info("Slack: connected to workspace %s as %s", self._auth.get("team"), self._auth.get("user"))
        return True

    async def _check_token_until_it_answers(self) -> None:
        while True:
            await asyncio.sleep(AUTH_RETRY_SECONDS)
            try:
                if await self._check_token():
                    return
            except PlatformRefused as exc:
                log.error("Slack: %s", exc)
                return

    def _authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """bolt's ``authorize``, from memory: the one bot token, and who the bot is once known.

        A plain function: bolt passes arguments by the names of its parameters.
        """

        async def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
            return AuthorizeResult(
                enterprise_id=enterprise_id,
                team_id=team_id,
                user_id=user_id,
                bot_token=self._bot_token,
                bot_user_id=self._bot_user_id,
                bot_id=self._auth.get("bot_id"),
            )

        return authorize

    async def close(self) -> None:
        """Close the socket and let work that was already acknowledged finish.

        From here on, HTTP requests get 503, which Slack retries later (on another replica, or
        on this one restarted): nothing is acknowledged that will not be worked on. Work still
        unfinished after the grace period stays in the journal for the next start.
        """
        self._closing = True
        if self._auth_task is not None:
            self._auth_task.cancel()
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
            self._socket = None
        try:
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.drain()
        except TimeoutError:
            log.warning("Slack: %d pieces of work were still queued or running at shutdown", self._jobs.qsize())
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    async def drain(self) -> None:
        """Wait for the work of requests Slack was already answered for (shutdown, tests, bench)."""
        while self._replays:
            await asyncio.gather(*self._replays, return_exceptions=True)
        await self._jobs.join()

    # --- HTTP -----------------------------------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.Response:
        """One request from Slack: bad signatures get 401, malformed bodies 400, the rest go to bolt.

        Acknowledged work is written to the journal before bolt answers; with ``queue_limit``
        pieces of work outstanding, a request that would add one gets 503 (Slack retries).
        """
        started = time.perf_counter()
        response = await self._answer_http(request)
        outcome = INBOUND_OUTCOMES.get(response.status, "accepted" if response.status < 400 else "error")
        self._observer.inbound(PLATFORM, outcome=outcome)
        if outcome == "accepted":
            self._observer.ack(PLATFORM, seconds=time.perf_counter() - started)
        return response

    async def _answer_http(self, request: web.Request) -> web.Response:
        if self._closing:
            return web.Response(status=503, text="shutting down")
        body = await request.text()
        headers = {k.lower(): v for k, v in request.headers.items()}
        refused = self._unsigned(body, headers)
        if refused is not None:
            log.info("Slack: refused a request (%s, %d bytes)", refused, len(body))
            return web.Response(status=401)
        bolt_request: AsyncBoltRequest | None = None
        try:
            # bolt parses the body once, here; what it made of it is checked before it is used.
            bolt_request = AsyncBoltRequest(
                body=body, query=request.query_string, headers=cast("dict[str, str | Sequence[str]]", headers)
            )
            payload = bolt_request.body
            problem = malformed(payload)
        except (ValueError, TypeError, AttributeError):
            problem = "not JSON or form data"
        if problem is not None or bolt_request is None:
            log.warning("Slack: refused a malformed request (%s, %d bytes)", problem, len(body))
            return web.Response(status=400, text="malformed request")
        kind = payload.get("type") or ("slash_command" if payload.get("command") else None)
        if kind not in ("url_verification", "ssl_check") and self._outstanding >= self._queue_limit:
            log.warning(
                "Slack: %d acknowledged pieces of work are waiting; answered 503 so Slack sends this %s again later",
                self._outstanding, kind or "request",
            )
            return web.Response(status=503, text="busy, try again later")
        entry = self._journal.append(payload) if self._journal is not None and kind in JOURNALED else None
        response = await self._dispatch(bolt_request, entry)
        if response.status == 404 and kind in ("event_callback", "block_actions"):
            # An event we do not use, or a button this version no longer knows (an old message):
            # Slack would show the person a warning for anything but 200.
            return web.Response(status=200)
        return await to_aiohttp_response(response)

    def _unsigned(self, body: str, headers: Mapping[str, str]) -> str | None:
        """Why the request is not Slack's (None when it is): Slack's signing, checked before parsing."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            return "no signature"
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            return "a timestamp that is not a number"
        if abs(self._verifier.clock.now() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
            return "a timestamp more than 5 minutes off"
        if not self._verifier.is_valid(body, timestamp, signature):
            return "a wrong signature"
        return None

    async def _dispatch(self, bolt_request: AsyncBoltRequest, entry: int | None) -> Any:
        """bolt runs the listeners (which only queue work); an entry none of them queued is done."""
        if entry is None:
            return await self.app.async_dispatch(bolt_request)
        bolt_request.context[ENTRY] = entry
        try:
            return await self.app.async_dispatch(bolt_request)
        finally:
            if entry not in self._queued_entries and self._journal is not None:
                self._journal.done(entry)

    def _replay(self) -> None:
        """Queue again the work the journal kept from a run that ended before doing it."""
        if self._journal is None:
            return
        for pending in list(self._journal.pending.values()):
            if pending.replies is not None:
                self._later("a reply written down before a restart",
                            functools.partial(self._post_again, pending.replies), entry=pending.entry)
                continue
            request = AsyncBoltRequest(body=json.dumps(pending.payload), headers={"content-type": "application/json"})
            replay = asyncio.create_task(self._dispatch(request, pending.entry), name="slack-replay")
            self._replays.add(replay)
            replay.add_done_callback(self._replays.discard)

    async def _post_again(self, replies: Mapping[str, Any]) -> None:
        for message in replies.get("messages") or ():
            args: dict[str, Any] = {"channel": replies["channel"], "blocks": message.get("blocks"),
                                    "text": message.get("text")}
            if replies.get("thread"):
                args["thread_ts"] = replies["thread"]
            await self.client.api_call("chat.postMessage", json=args)

    # --- registration -------------------------------------------------------------------------------

    def _register(self) -> None:
        """Every listener, recorded in :attr:`features` (the manifest test compares the two)."""
        self.features.event("message.im")
        self.app.event("message")(self._on_message)
        self.features.event("app_mention")
        self.app.event("app_mention")(self._on_mention)
        self.features.event("app_home_opened")
        self.app.event("app_home_opened")(self._on_home)
        self.features.event("app_uninstalled")
        self.app.event("app_uninstalled")(self._on_uninstalled)
        self.features.event("tokens_revoked")
        self.app.event("tokens_revoked")(self._on_tokens_revoked)
        self.features.command(COMMAND)
        self.app.command(COMMAND)(self._on_command)
        self.features.message_shortcut(CAPTURE_SHORTCUT)
        self.app.shortcut(CAPTURE_SHORTCUT)(self._on_capture)
        for shortcut in self._engine.catalog.shortcuts():  # "Log as touchpoint", ...
            self.features.message_shortcut(shortcut.id)
            self.app.shortcut(shortcut.id)(self._on_capture)
        self.features.interactivity()
        self.app.action(re.compile(r".\|\d+$"))(self._on_press)
        self.app.view(re.compile(r"^[a-z_]+:submit$"))(self._on_submit)
        # Events the app is sent but has no use for (a message edit, a reaction) still get 200.
        self.app.event(re.compile(".*"))(self._ignore)

    async def _ignore(self) -> None:
        return None

    # --- the app removed ------------------------------------------------------------------------------

    async def _on_uninstalled(self, body: dict[str, Any]) -> None:
        """The workspace removed the app: nobody there can be messaged any more."""
        team = team_of(body) or str(body.get("team_id", ""))
        self._later("an uninstall", functools.partial(self._unreachable, team, None))

    async def _on_tokens_revoked(self, body: dict[str, Any]) -> None:
        """Tokens were revoked: the bot token (nobody can be messaged) or some people's user tokens."""
        team = team_of(body) or str(body.get("team_id", ""))
        tokens = (body.get("event") or {}).get("tokens") or {}
        users = [str(u) for u in tokens.get("oauth") or () if u]
        if tokens.get("bot"):
            self._later("a revoked bot token", functools.partial(self._unreachable, team, None))
        elif users:
            self._later("revoked user tokens", functools.partial(self._unreachable, team, users))

    async def _unreachable(self, team: str, users: list[str] | None) -> None:
        if users is None:
            self._removed_from.add(team)
        async with self._engine.db.transaction() as store:
            marked = await store.people.mark_unreachable(
                platform=PLATFORM, workspace=team, user_ids=users, now=self._clock()
            )
        log.warning("Slack: the app was removed or its token revoked; %d people there are now unreachable", marked,
                    extra={"platform": PLATFORM})

    # --- events ---------------------------------------------------------------------------------------

    async def _on_message(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        inbound = to_inbound(body, bot_user_id=self._bot_user_id or _bot_of(body))
        if inbound is None:
            return
        where = (inbound.key.channel, None)
        self._later("a direct message", functools.partial(self._answer_dm, inbound), apologise_to=where,
                    entry=context.get(ENTRY), inbound=inbound)

    async def _answer_dm(self, inbound: Inbound) -> None:
        await self._remember_dm(inbound.key.workspace, inbound.key.user, inbound.key.channel)
        replies = await self._turn(inbound)
        await self._post(inbound.key.channel, replies)

    async def _on_mention(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        inbound = to_inbound(body, bot_user_id=self._bot_user_id or _bot_of(body))
        if inbound is None:
            return
        where = (inbound.key.channel, inbound.key.thread)
        self._later("a mention", functools.partial(self._answer_mention, inbound), apologise_to=where,
                    entry=context.get(ENTRY), inbound=inbound)

    async def _answer_mention(self, inbound: Inbound) -> None:
        replies = await self._turn(inbound)
        await self._post(inbound.key.channel, replies, thread=inbound.key.thread, owner=inbound.key.user)

    async def _on_home(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        event = body["event"]
        if event.get("tab", "home") != "home" or not event.get("user"):
            return

        async def run() -> None:
            team, user = team_of(body) or str(body.get("team_id", "")), str(event["user"])
            channel = str(event.get("channel") or "") or await self._dm_channel(team, user)
            await self._remember_dm(team, user, channel)
            sender = await self._sender(team, user)
            key = ConversationKey(PLATFORM, team, channel, user)
            home = await self._engine.home(key, sender, event_id=event_id(body))  # the engine claims the event
            if home is None:
                log.info("duplicate event %s ignored", event_id(body))
                return
            self._linked(team, user, sender)
            await self.client.views_publish(user_id=user, view=render_home(home))

        self._later("App Home", run, entry=context.get(ENTRY))

    # --- the /brm command and the shortcut ----------------------------------------------------------

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        catalog = self._engine.catalog
        inbound = to_inbound(body, catalog=catalog)
        if inbound is None:
            return

        async def run() -> None:
            if inbound.action is not None and inbound.form is not None:
                await self._open_form(str(body["trigger_id"]), inbound, response_url=body.get("response_url"))
                return
            verb = command_words(str(body.get("text") or ""))[0]
            target = catalog.slash(verb)
            if target is None or target.flow == MENU:
                # Help without the chat menu's buttons: they would start questions that can only
                # be answered by typing, and what is typed in a channel never reaches the bot.
                answer = [Reply.text(slash_help(catalog))]
                if target is None:
                    answer.insert(0, Reply.text(f"I don't know “/brm {verb[:40]}”.", TextStyle.MUTED))
                await self._respond(str(body["response_url"]), answer)
                return
            # Every /brm starts afresh: a question an earlier /brm left open (say "Which
            # request?") must not take this command's words as its answer.
            replies = await self._turn(inbound, afresh=True)
            await self._respond(str(body["response_url"]), replies)

        self._later("/brm", run, respond_to=body.get("response_url"))

    async def _on_capture(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()

        async def run() -> None:
            channel = str((body.get("channel") or {}).get("id") or "")
            ts = str(body["message"].get("ts") or body.get("message_ts") or "")
            permalink: str | None = None
            if channel and ts:
                try:
                    permalink = (await self.client.chat_getPermalink(channel=channel, message_ts=ts)).get("permalink")
                except SlackApiError as exc:
                    log.info("Slack: no permalink for a captured message (%s)", _error_code(exc))
            inbound = to_inbound(body, permalink=permalink, catalog=self._engine.catalog)
            if inbound is not None:
                await self._open_form(str(body["trigger_id"]), inbound, response_url=body.get("response_url"))

        self._later("a message shortcut", run, respond_to=body.get("response_url"))

    async def _open_form(self, trigger_id: str, inbound: Inbound, *, response_url: str | None) -> None:
        replies = await self._turn(inbound)
        form = next((r.form for r in replies if r.form is not None), None)
        if form is None:
            if response_url and replies:
                await self._respond(response_url, replies)
            return
        place = ModalPlace(inbound.key.channel, inbound.key.thread, form.context)
        view = render_modal(form, private_metadata=encode_metadata(place))
        await self.client.views_open(trigger_id=trigger_id, view=view)

    # --- interactivity ------------------------------------------------------------------------------

    async def _on_press(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()

        async def run() -> None:
            container = body.get("container") or {}
            team, user = team_of(body), str(body["user"]["id"])
            owner = owner_of(str(body["actions"][0].get("block_id") or ""))
            if owner is not None and owner != user:
                if body.get("response_url"):
                    await self._respond(str(body["response_url"]), [Reply.text(NOT_YOURS, TextStyle.MUTED)])
                return
            channel = await self._dm_channel(team, user) if container.get("type") == "view" else None
            inbound = to_inbound(body, channel=channel)
            if inbound is None:
                return
            replies = await self._turn(inbound)
            refused = any(reply.refused_action for reply in replies)
            if not refused:  # a refused press leaves the buttons to the others (the BRM team's channel)
                await self._mark_answered(body, ignored=any(reply.ignored_action for reply in replies))
            shared = refused and not inbound.key.channel.startswith("D")
            if (container.get("is_ephemeral") or shared) and body.get("response_url"):
                await self._respond(str(body["response_url"]), replies)
            else:
                await self._post(inbound.key.channel, replies, thread=inbound.key.thread, owner=user)

        self._later("a button", run, entry=context.get(ENTRY))

    async def _mark_answered(self, body: Mapping[str, Any], *, ignored: bool = False) -> None:
        """Replace the pressed question's buttons with "✓ label", so they can't be pressed twice.

        A press the engine ignored (the question had moved on) shows as no longer active instead.
        Best effort, and never in the reply's way: a message Slack no longer has, a rate limit, a
        Slack that does not answer within ``MARK_PATIENCE_SECONDS`` are logged and the reply
        goes out all the same (the engine ignores a second press of an old question anyway).
        While ``chat.update`` is paused by a rate limit, it is not tried at all.
        """
        if self.rate_limits.remaining("chat.update") > 0:
            log.info("Slack: the pressed question was not marked answered (chat.update is rate limited)")
            return
        try:
            async with asyncio.timeout(MARK_PATIENCE_SECONDS):
                await self._replace_buttons(body, ignored=ignored)
        except SlackApiError as exc:
            log.info("Slack: the pressed question could not be marked answered (%s)", _error_code(exc))
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("Slack: the pressed question could not be marked answered (%s)", type(exc).__name__)

    async def _replace_buttons(self, body: Mapping[str, Any], *, ignored: bool) -> None:
        container = body.get("container") or {}
        if container.get("type") != "message":
            return  # App Home buttons are a menu: they stay
        pressed = body["actions"][0]
        label = str((pressed.get("text") or {}).get("text") or pressed.get("value") or "")
        message = body.get("message") or {}
        note = "No longer active" if ignored else f"✓ {label}"
        blocks = answered(message.get("blocks") or [], str(pressed.get("block_id") or ""), note)
        if container.get("is_ephemeral"):
            if body.get("response_url"):
                hook = webhook_client(str(body["response_url"]), http=self._http)
                await hook.send_dict({"replace_original": True, "blocks": blocks, "text": note})
            return
        await self.client.chat_update(
            channel=str(container.get("channel_id") or (body.get("channel") or {}).get("id")),
            ts=str(container.get("message_ts") or message.get("ts")),
            blocks=blocks,
            text=str(message.get("text") or note),
        )

    async def _on_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        inbound = to_inbound(body)
        if inbound is None:
            await ack()
            return
        try:
            replies = await self._turn(inbound)
        except Exception:
            log.exception("Slack: a form submission failed")
            await ack(response_action="errors", errors={_first_field(body): SORRY})
            return
        refused: Form | None = next((r.form for r in replies if r.form is not None), None)
        if refused is not None and refused.errors:
            if errors_fit(refused, inbound.form or {}):
                await ack(response_action="errors", errors=field_errors(refused))
            else:
                place = ModalPlace(inbound.key.channel, inbound.key.thread, refused.context)
                view = render_modal(refused, private_metadata=encode_metadata(place), show_errors=True)
                await ack(response_action="update", view=view)
            return
        await ack()

        async def run() -> None:
            team, user = inbound.key.workspace, inbound.key.user
            await self._post(await self._dm_channel(team, user), [r for r in replies if r.form is None])

        self._later("a form", run)

    # --- proactive ----------------------------------------------------------------------------------

    async def send(self, to: Address, reply: Reply) -> Delivered:
        """Post a message the bot starts to a person's DM (``to.user``) or a channel.

        A person who never wrote to the bot (``to.email`` only) is found with
        ``users.lookupByEmail`` and messaged in a DM; not found is :class:`Unreachable`.

        An outbox message (``to.outbox_id``) carries its id in the message's metadata. When an
        earlier attempt may have posted it (``to.maybe_sent_since``: its worker died after Slack
        took it, or Slack never answered), the channel's recent history is read first and a
        post found there is reported as delivered instead of posting it twice.
        """
        if to.workspace in self._removed_from:
            raise Unreachable("the app was uninstalled from this Slack workspace")
        try:
            if to.channel:
                channel = to.channel
            elif to.user:
                channel = await self._dm_channel(to.workspace, to.user)
            elif to.email:
                found = await self._proactive.users_lookupByEmail(email=to.email)
                user_id = str((found.get("user") or {}).get("id") or "")
                if not user_id:
                    raise Unreachable("Slack has no user with this person's email")
                channel = await self._dm_channel(to.workspace, user_id)
            else:
                raise Unreachable("the address names neither a user nor a channel")
            metadata = None
            if to.outbox_id is not None:
                if to.maybe_sent_since is not None:
                    earlier = await self._posted_before(channel, to.outbox_id, since=to.maybe_sent_since)
                    if earlier:
                        return Delivered(message_id=f"{channel}:{earlier}")
                metadata = {"event_type": OUTBOX_EVENT, "event_payload": {"outbox_id": to.outbox_id}}
            paused = self.rate_limits.remaining("chat.postMessage")
            if paused > 0:
                raise DeliveryError("Slack asked for a pause in posting messages", retry_after=paused)
            posted = await self._post(channel, [reply], client=self._proactive, metadata=metadata)
        except SlackApiError as exc:
            code = _error_code(exc)
            if code in UNREACHABLE_ERRORS:
                raise Unreachable(f"Slack cannot reach {to.user or to.channel}: {code}") from None
            retry_after = _retry_after(exc)
            raise DeliveryError(f"Slack refused the message: {code}", retry_after=retry_after) from None
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack could not be reached: {type(exc).__name__}") from None
        return Delivered(message_id=f"{channel}:{posted}" if posted else None)

    async def _posted_before(self, channel: str, outbox_id: int, *, since: datetime) -> str | None:
        """The ts of the bot's post of outbox message ``outbox_id`` in ``channel`` since ``since``
        (found by its metadata among the latest ``HISTORY_LIMIT`` messages), or None.

        A history Slack refuses to show (a scope the installation lacks, a channel the bot
        cannot read) is logged and treated as not found: the message is posted, at least once
        as before. A pause or an unreachable Slack goes back to the worker (tried again later).
        """
        oldest = f"{(since - CLOCK_MARGIN).timestamp():.6f}"
        try:
            history = await self._proactive.conversations_history(
                channel=channel, oldest=oldest, limit=HISTORY_LIMIT, include_all_metadata=True
            )
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                raise
            log.warning("Slack: cannot read back %s to find an earlier post (%s); posting it",
                        channel, _error_code(exc))
            return None
        for message in history.get("messages") or ():
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == OUTBOX_EVENT and payload.get("outbox_id") == outbox_id:
                return str(message.get("ts") or "") or None
        return None

    # --- shared -------------------------------------------------------------------------------------

    async def _turn(self, inbound: Inbound, *, afresh: bool = False) -> list[Reply]:
        """One engine turn, with the sender's profile on first contact."""
        team, user = inbound.key.workspace, inbound.key.user
        sender = await self._sender(team, user)
        replies = await self._engine.handle(
            dataclasses.replace(inbound, sender=sender) if sender else inbound, afresh=afresh
        )
        self._linked(team, user, sender)
        return replies

    def _linked(self, team: str, user: str, sender: Sender | None) -> None:
        """After a turn: no more profile look-ups for someone linked with an email.

        Someone whose look-up failed is looked up again on their next message; someone whose
        profile has no email, again after ``RECHECK_PROFILE``.
        """
        if sender is None:
            return  # known already, or the look-up failed (then again next time)
        if not sender.email:
            self._unknown[(team, user)] = self._clock() + RECHECK_PROFILE
            return
        self._unknown.pop((team, user), None)
        self._known[(team, user)] = True

    async def _sender(self, team: str, user: str) -> Sender | None:
        """Who ``user`` is (name, email, time zone) from ``users.info``, only for people not yet
        linked with an email. None when it is not needed, or when the look-up failed."""
        if (team, user) in self._known:
            return None
        recheck = self._unknown.get((team, user))
        if recheck is not None and self._clock() < recheck:
            return None
        if not await self._engine.needs_profile(platform=PLATFORM, workspace=team, user_id=user):
            self._known[(team, user)] = True
            return None
        try:
            info = (await self.client.users_info(user=user)).get("user") or {}
        except SlackApiError as exc:
            log.info("Slack: no profile for a user (%s); looking it up again on their next message", _error_code(exc))
            return None
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("Slack: no profile for a user (%s); looking it up again on their next message",
                     type(exc).__name__)
            return None
        profile = info.get("profile") or {}
        return Sender(
            name=profile.get("real_name") or info.get("real_name") or info.get("name") or None,
            email=profile.get("email") or None,
            time_zone=info.get("tz") or None,
        )

    async def _post(
        self,
        channel: str,
        replies: Sequence[Reply],
        *,
        thread: str | None = None,
        owner: str | None = None,
        client: AsyncWebClient | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Post the replies of a turn (``owner``: whose questions they ask); returns the first message's ts.

        In a piece of journaled work, the messages are written down first (see :class:`Journal`).
        """
        first: str | None = None
        rendered = messages(replies, owner=owner)
        entry = _entry.get()
        if entry is not None and self._journal is not None and rendered:
            self._journal.replies(entry, channel=channel, thread=thread,
                                  messages=[{"blocks": m.blocks, "text": m.text} for m in rendered])
        for message in rendered:
            # What chat_postMessage sends, without its walk over the blocks looking for SDK objects
            # (ours are plain dicts): this is the call every message the bot answers makes.
            args: dict[str, Any] = {"channel": channel, "blocks": message.blocks, "text": message.text}
            if thread:
                args["thread_ts"] = thread
            if metadata:
                args["metadata"] = metadata
            posted = await (client or self.client).api_call("chat.postMessage", json=args)
            first = first or posted.get("ts")
        return first

    async def _respond(self, response_url: str, replies: Sequence[Reply]) -> None:
        """Answer through a ``response_url``: only the person who asked sees it."""
        hook = webhook_client(response_url, http=self._http)
        for message in messages(replies):
            response = await hook.send_dict(_ephemeral(message))
            if response.status_code >= 400:
                log.warning("Slack: response_url answered %d", response.status_code)

    async def _dm_channel(self, team: str, user: str) -> str:
        """The bot's DM channel with ``user``: cached, stored, or opened with ``conversations.open``."""
        cached = self._dms.get((team, user))
        if cached:
            return str(cached)
        async with self._engine.db.transaction() as store:
            stored = await store.references.load(platform=PLATFORM, workspace=team, scope=DM_SCOPE, target=user)
        if stored and stored.get("channel"):
            self._dms[(team, user)] = stored["channel"]
            return str(stored["channel"])
        opened = await self.client.conversations_open(users=user)
        channel = str((opened.get("channel") or {}).get("id") or "")
        if not channel:
            raise Unreachable("Slack opened no DM channel")
        await self._remember_dm(team, user, channel)
        return channel

    async def _remember_dm(self, team: str, user: str, channel: str) -> None:
        if not channel.startswith("D") or self._dms.get((team, user)) == channel:
            return
        async with self._engine.db.transaction() as store:
            await store.references.save(
                platform=PLATFORM,
                workspace=team,
                scope=DM_SCOPE,
                target=user,
                reference={"channel": channel},
                now=self._clock(),
            )
        self._dms[(team, user)] = channel

    def _later(
        self,
        what: str,
        run: Callable[[], Awaitable[None]],
        *,
        apologise_to: tuple[str, str | None] | None = None,
        respond_to: object = None,
        entry: int | None = None,
        inbound: Inbound | None = None,
    ) -> None:
        """Queue work to do after the ack, for the ``WORK_SLOTS`` workers (``entry``: its journal entry).

        The listener returns at once, so bolt's request and its context are let go of; a queued
        piece of work is only what it needs (a small :class:`Inbound`, a payload). Under a burst,
        every running piece puts callbacks on the event loop, and a new request's ack would queue
        behind them: a few workers keep acks quick. The order of one person's messages is kept
        by the engine. ``close`` waits for what is queued.
        """
        if self._closing and not self._workers:
            log.warning("Slack: %s arrived as the adapter closed and was not handled", what)
            return
        self._outstanding += 1
        if entry is not None:
            self._queued_entries.add(entry)
        self._jobs.put_nowait(_Job(what, run, apologise_to, respond_to, entry, inbound))
        while len(self._workers) < WORK_SLOTS and not self._closing:
            worker = asyncio.create_task(self._work(), name=f"slack-worker-{len(self._workers)}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        """One worker: queued work, one piece at a time, never silently lost.

        A failure is logged by type (never with message content or tokens) and, where there is
        somewhere to say so, the person is told.
        """
        while True:
            job = await self._jobs.get()
            token = _entry.set(job.entry)
            finished = False
            try:
                await job.run()
                finished = True
            except Exception as exc:
                context = (
                    {"platform": PLATFORM, "event_id": job.inbound.event_id, "conversation_key": job.inbound.key}
                    if job.inbound is not None else {"platform": PLATFORM}
                )
                log.exception("Slack: handling %s failed (%s)", job.what, type(exc).__name__, extra=context)
                with contextlib.suppress(Exception):
                    await self._apologise(job.apologise_to, job.respond_to)
                finished = True
            finally:
                # Work cut off by shutdown stays in the journal, for the next start.
                _entry.reset(token)
                self._outstanding -= 1
                if job.entry is not None:
                    self._queued_entries.discard(job.entry)
                    if finished and self._journal is not None:
                        self._journal.done(job.entry)
                self._jobs.task_done()

    async def _apologise(self, where: tuple[str, str | None] | None, response_url: object) -> None:
        sorry = Reply.text(SORRY, TextStyle.WARNING)
        if isinstance(response_url, str) and response_url:
            await self._respond(response_url, [sorry])
        elif where is not None:
            await self._post(where[0], [sorry], thread=where[1])


def _ephemeral(message: Message) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "blocks": message.blocks, "text": message.text}


def _bot_of(body: Mapping[str, Any]) -> str | None:
    """The bot's own user id as the Events API envelope reports it (before ``auth.test`` ran)."""
    for authorization in body.get("authorizations") or ():
        if authorization.get("is_bot") and authorization.get("user_id"):
            return str(authorization["user_id"])
    return None


def _error_code(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {exc.response.status_code}"


def _retry_after(exc: SlackApiError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    if not any(name.lower() == "retry-after" for name in headers):
        return None
    return retry_after(headers)


def _first_field(body: Mapping[str, Any]) -> str:
    values = ((body.get("view") or {}).get("state") or {}).get("values") or {}
    return next(iter(values), "title")


