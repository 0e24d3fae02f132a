"""The Slack adapter: slack-bolt's ``AsyncApp`` on our aiohttp server (or a Socket Mode socket).

Every listener acknowledges Slack first and then does the slow work (the engine's
transaction, the Web API calls), so Slack always has its answer within 3 seconds. The one
exception is a modal submission: Slack wants the field errors in the acknowledgement itself,
so the engine runs before ``ack`` there (one short transaction).

A retried event never runs twice: engine turns claim the event id in their own transaction,
and App Home refreshes claim it through :func:`storage.queries.claim_event`.

Example::

    slack = SlackAdapter(engine, bot_token=token, signing_secret=secret, http=session, clock=utcnow)
    slack.mount(web_app)          # POST /slack/events
    await slack.start()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.async_app import AsyncAck
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier

from adapters.slack.client import sdk_logger, web_client, webhook_client
from adapters.slack.features import Features
from adapters.slack.inbound import (
    CAPTURE_SHORTCUT,
    COMMAND,
    COMMAND_VERBS,
    INTAKE_OPEN,
    PLATFORM,
    ModalPlace,
    command_words,
    encode_metadata,
    event_id,
    malformed,
    team_of,
    to_inbound,
)
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
from conversations.engine import Engine
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
from conversations.ports import DeliveryError, PlatformRefused, Unreachable

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
DM_SCOPE = "dm"
CACHE_SIZE = 10_000
CLOSE_GRACE_SECONDS = 10.0
WORK_SLOTS = 16  # workers for acknowledged events; the rest wait in the queue (see _later)
UNREACHABLE_ERRORS = frozenset(
    {
        "channel_not_found", "user_not_found", "not_in_channel", "is_archived", "account_inactive",
        "cannot_dm_bot", "user_disabled", "user_not_visible", "team_access_not_granted", "messages_tab_disabled",
    }
)
REFUSED_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type"}
)
SLASH_HELP = (
    "In any channel: */brm request* [title] opens the request form, */brm status DR-42* shows a request, "
    "*/brm mine* lists yours. On any message: ⋮ → *Capture as demand request*. "
    "Or write to me in a direct message, or mention me in a channel."
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


class SlackAdapter:
    """Slack for the engine: chat, buttons, the ``/brm`` command, a shortcut, modals, App Home.

    One per process. ``http`` is the bot's shared aiohttp session; ``api_url`` points at a
    GovSlack-style host or a test fake; with ``app_token`` the adapter talks to Slack over
    Socket Mode and serves no URL.
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
    ) -> None:
        self._engine = engine
        self._http = http
        self._clock = clock
        self._path = path
        self._app_token = app_token
        self._verifier = SignatureVerifier(signing_secret)
        self.client = web_client(bot_token, api_url=api_url, http=http)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret,
            process_before_response=False,
            logger=sdk_logger("adapters.slack.bolt"),
        )
        self.features = Features()
        self._socket: AsyncSocketModeHandler | None = None
        self._known: _Bounded = _Bounded(CACHE_SIZE)
        self._dms: _Bounded = _Bounded(CACHE_SIZE)
        self._bot_user_id: str | None = None
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._workers: set[asyncio.Task[None]] = set()
        self._closing = False
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
        """Check the token; in Socket Mode, open the socket (no public URL needed)."""
        try:
            auth = await self.client.auth_test()
            self._bot_user_id = auth.get("user_id")
            log.info("Slack: connected to workspace %s as %s", auth.get("team"), auth.get("user"))
        except SlackApiError as exc:
            code = _error_code(exc)
            if code in REFUSED_TOKEN:
                raise PlatformRefused(f"SLACK_BOT_TOKEN: Slack refused the token ({code}); see docs/slack.md") from None
            log.error("Slack: checking SLACK_BOT_TOKEN failed (%s); will retry on the first event", code)
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack: cannot reach the Web API yet (%s); will retry on the first event", type(exc).__name__)
        if self._app_token is not None:
            self._socket = AsyncSocketModeHandler(self.app, self._app_token, web_client=self.client)
            await self._socket.connect_async()
            log.info("Slack: Socket Mode connected")

    async def close(self) -> None:
        """Close the socket and let work that was already acknowledged finish.

        From here on, HTTP requests get 503, which Slack retries later (on another replica, or
        on this one restarted): nothing is acknowledged that will not be worked on.
        """
        self._closing = True
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        try:
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.drain()
        except TimeoutError:
            log.warning("Slack: %d pieces of work were still queued or running at shutdown", self._jobs.qsize())
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for the work of requests Slack was already answered for (shutdown, tests, bench)."""
        await self._jobs.join()

    # --- HTTP -----------------------------------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.Response:
        """One request from Slack: malformed bodies get 400, bad signatures 401, the rest go to bolt."""
        if self._closing:
            return web.Response(status=503, text="shutting down")
        body = await request.text()
        headers = {k.lower(): v for k, v in request.headers.items()}
        bolt_request: AsyncBoltRequest | None = None
        try:
            # bolt parses the body once, here; what it made of it is checked before it is used.
            bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=headers)
            payload = bolt_request.body
            problem = malformed(payload)
        except (ValueError, TypeError, AttributeError):
            problem = "not JSON or form data"
        if problem is not None or bolt_request is None:
            if not self._verifier.is_valid_request(body, headers):
                return web.Response(status=401)
            log.warning("Slack: refused a malformed request (%s, %d bytes)", problem, len(body))
            return web.Response(status=400, text="malformed request")
        response = await self.app.async_dispatch(bolt_request)
        if response.status == 404 and payload.get("type") in ("event_callback", "block_actions"):
            # An event we do not use, or a button this version no longer knows (an old message):
            # Slack would show the person a warning for anything but 200.
            return web.Response(status=200)
        return await to_aiohttp_response(response)

    # --- registration -------------------------------------------------------------------------------

    def _register(self) -> None:
        """Every listener, recorded in :attr:`features` (the manifest test compares the two)."""
        self.features.event("message.im")
        self.app.event("message")(self._on_message)
        self.features.event("app_mention")
        self.app.event("app_mention")(self._on_mention)
        self.features.event("app_home_opened")
        self.app.event("app_home_opened")(self._on_home)
        self.features.command(COMMAND)
        self.app.command(COMMAND)(self._on_command)
        self.features.message_shortcut(CAPTURE_SHORTCUT)
        self.app.shortcut(CAPTURE_SHORTCUT)(self._on_capture)
        self.features.interactivity()
        self.app.action(re.compile(r".\|\d+$"))(self._on_press)
        self.app.view(re.compile(r"^[a-z_]+:submit$"))(self._on_submit)
        # Events the app is sent but has no use for (a message edit, a reaction) still get 200.
        self.app.event(re.compile(".*"))(self._ignore)

    async def _ignore(self) -> None:
        return None

    # --- events ---------------------------------------------------------------------------------------

    async def _on_message(self, body: dict[str, Any]) -> None:
        inbound = to_inbound(body, bot_user_id=self._bot_user_id or _bot_of(body))
        if inbound is None:
            return
        where = (inbound.key.channel, None)
        self._later("a direct message", functools.partial(self._answer_dm, inbound), apologise_to=where)

    async def _answer_dm(self, inbound: Inbound) -> None:
        await self._remember_dm(inbound.key.workspace, inbound.key.user, inbound.key.channel)
        replies = await self._turn(inbound)
        await self._post(inbound.key.channel, replies)

    async def _on_mention(self, body: dict[str, Any]) -> None:
        inbound = to_inbound(body, bot_user_id=self._bot_user_id or _bot_of(body))
        if inbound is None:
            return
        where = (inbound.key.channel, inbound.key.thread)
        self._later("a mention", functools.partial(self._answer_mention, inbound), apologise_to=where)

    async def _answer_mention(self, inbound: Inbound) -> None:
        replies = await self._turn(inbound)
        await self._post(inbound.key.channel, replies, thread=inbound.key.thread, owner=inbound.key.user)

    async def _on_home(self, body: dict[str, Any]) -> None:
        event = body["event"]
        if event.get("tab", "home") != "home" or not event.get("user"):
            return

        async def run() -> None:
            async with self._engine.db.transaction() as store:
                fresh = await store.events.claim(platform=PLATFORM, event_id=event_id(body), now=self._clock())
            if not fresh:
                log.info("duplicate event %s ignored", event_id(body))
                return
            team, user = team_of(body) or str(body.get("team_id", "")), str(event["user"])
            channel = str(event.get("channel") or "") or await self._dm_channel(team, user)
            await self._remember_dm(team, user, channel)
            sender = await self._sender(team, user)
            home = await self._engine.home(ConversationKey(PLATFORM, team, channel, user), sender)
            self._known[(team, user)] = True
            await self.client.views_publish(user_id=user, view=render_home(home))

        self._later("App Home", run)

    # --- the /brm command and the shortcut ----------------------------------------------------------

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        inbound = to_inbound(body)
        if inbound is None:
            return

        async def run() -> None:
            if inbound.action is not None and inbound.action.id == INTAKE_OPEN:
                await self._open_form(str(body["trigger_id"]), inbound, response_url=body.get("response_url"))
                return
            verb = command_words(str(body.get("text") or ""))[0]
            if verb in ("", "help") or verb not in COMMAND_VERBS:
                # Help without the chat menu's buttons: they would start questions that can only
                # be answered by typing, and what is typed in a channel never reaches the bot.
                answer = [Reply.text(SLASH_HELP)]
                if verb not in ("", "help"):
                    answer.insert(0, Reply.text(f"I don't know “/brm {verb[:40]}”.", TextStyle.MUTED))
                await self._respond(str(body["response_url"]), answer)
                return
            # Every /brm starts afresh: a question an earlier /brm left open (say "Which
            # request?") must not take this command's words as its answer.
            await self._turn(dataclasses.replace(inbound, event_id=f"{inbound.event_id}:reset", text="cancel"))
            replies = await self._turn(inbound)
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
            inbound = to_inbound(body, permalink=permalink)
            if inbound is not None:
                await self._open_form(str(body["trigger_id"]), inbound, response_url=body.get("response_url"))

        self._later("the capture shortcut", run, respond_to=body.get("response_url"))

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

    async def _on_press(self, ack: AsyncAck, body: dict[str, Any]) -> None:
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
            await self._mark_answered(body, ignored=any(reply.ignored_action for reply in replies))
            if container.get("is_ephemeral") and body.get("response_url"):
                await self._respond(str(body["response_url"]), replies)
            else:
                await self._post(inbound.key.channel, replies, thread=inbound.key.thread, owner=user)

        self._later("a button", run)

    async def _mark_answered(self, body: Mapping[str, Any], *, ignored: bool = False) -> None:
        """Replace the pressed question's buttons with "✓ label", so they can't be pressed twice.

        A press the engine ignored (the question had moved on) shows as no longer active instead.
        """
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
        """Post a message the bot starts to a person's DM (``to.user``) or a channel."""
        try:
            if to.channel:
                channel = to.channel
            elif to.user:
                channel = await self._dm_channel(to.workspace, to.user)
            else:
                raise Unreachable("the address names neither a user nor a channel")
            posted = await self._post(channel, [reply])
        except SlackApiError as exc:
            code = _error_code(exc)
            if code in UNREACHABLE_ERRORS:
                raise Unreachable(f"Slack cannot reach {to.user or to.channel}: {code}") from None
            retry_after = _retry_after(exc)
            raise DeliveryError(f"Slack refused the message: {code}", retry_after=retry_after) from None
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack could not be reached: {type(exc).__name__}") from None
        return Delivered(message_id=f"{channel}:{posted}" if posted else None)

    # --- shared -------------------------------------------------------------------------------------

    async def _turn(self, inbound: Inbound) -> list[Reply]:
        """One engine turn, with the sender's profile on first contact."""
        team, user = inbound.key.workspace, inbound.key.user
        sender = await self._sender(team, user)
        replies = await self._engine.handle(dataclasses.replace(inbound, sender=sender) if sender else inbound)
        self._known[(team, user)] = True
        return replies

    async def _sender(self, team: str, user: str) -> Sender | None:
        """Who ``user`` is (name, email, time zone) from ``users.info``, only for people not yet linked."""
        if (team, user) in self._known:
            return None
        if await self._engine.known(platform=PLATFORM, workspace=team, user_id=user):
            self._known[(team, user)] = True
            return None
        try:
            info = (await self.client.users_info(user=user)).get("user") or {}
        except SlackApiError as exc:
            log.info("Slack: no profile for a user (%s); they are linked without an email", _error_code(exc))
            return None
        profile = info.get("profile") or {}
        return Sender(
            name=profile.get("real_name") or info.get("real_name") or info.get("name") or None,
            email=profile.get("email") or None,
            time_zone=info.get("tz") or None,
        )

    async def _post(
        self, channel: str, replies: Sequence[Reply], *, thread: str | None = None, owner: str | None = None
    ) -> str | None:
        """Post the replies of a turn (``owner``: whose questions they ask); returns the first message's ts."""
        first: str | None = None
        for message in messages(replies, owner=owner):
            # What chat_postMessage sends, without its walk over the blocks looking for SDK objects
            # (ours are plain dicts): this is the call every message the bot answers makes.
            args: dict[str, Any] = {"channel": channel, "blocks": message.blocks, "text": message.text}
            if thread:
                args["thread_ts"] = thread
            posted = await self.client.api_call("chat.postMessage", json=args)
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
    ) -> None:
        """Queue work to do after the ack, for the ``WORK_SLOTS`` workers.

        The listener returns at once, so bolt's request and its context are let go of; a queued
        piece of work is only what it needs (a small :class:`Inbound`, a payload). Under a burst,
        every running piece puts callbacks on the event loop, and a new request's ack would queue
        behind them: a few workers keep acks quick. The order of one person's messages is kept
        by the engine. ``close`` waits for what is queued.
        """
        if self._closing and not self._workers:
            log.warning("Slack: %s arrived as the adapter closed and was not handled", what)
            return
        self._jobs.put_nowait(_Job(what, run, apologise_to, respond_to))
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
            try:
                await job.run()
            except Exception as exc:
                log.exception("Slack: handling %s failed (%s)", job.what, type(exc).__name__)
                with contextlib.suppress(Exception):
                    await self._apologise(job.apologise_to, job.respond_to)
            finally:
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
    for name, value in headers.items():
        if name.lower() == "retry-after":
            with contextlib.suppress(TypeError, ValueError):
                return float(value[0] if isinstance(value, list) else value)
    return None


def _first_field(body: Mapping[str, Any]) -> str:
    values = ((body.get("view") or {}).get("state") or {}).get("values") or {}
    return next(iter(values), "title")


