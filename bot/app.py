"""One Guichet process: the HTTP server, the configured channels, the manager and the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.admin_api import AdminApi
from bot.config import Configuration
from bot.desk import TicketDesk
from bot.errors import ConfigError, StoreError
from bot.fanout import Fanout
from bot.kb_watch import KnowledgeBaseWatcher
from bot.level2_api import Level2Api
from bot.manager import LEASE_SECONDS, REPLY_CONTEXT, ConversationManager, Outbox, WebhookTarget
from bot.messages import Inbound, Outbound, TranscriptEntry, conversation_key
from bot.metrics import Metrics
from bot.nlu_api import NluApi
from bot.policy import Policy
from bot.settings import Settings
from bot.stats import DeskStats
from bot.store.base import Store
from channels.base import Channel
from handoff.signing import new_secret
from nlu.engine import BuiltinEngine, RasaEngine
from nlu.problems import DataProblem

if TYPE_CHECKING:
    from bot.nlu_model import IntentModel

log = logging.getLogger("guichet")


def model_dir(settings: Settings) -> Path:
    return Path(settings.nlu.model_dir or Path(settings.store.path) / "nlu")


def intent_encoder(settings: Settings) -> str:
    """The sentence encoder the intent model learns from, "" for none (nlu.encoder)."""
    return "" if settings.nlu.encoder == "none" else settings.nlu.encoder


def equip(engine: BuiltinEngine, configuration: Configuration) -> IntentModel | None:
    """Give the engine this configuration's intent model, loaded or trained once; with
    `nlu.encoder` its knowledge base reads sentence vectors too, a desk of articles without
    intents included. Seconds the first time: from the event loop, call it in a thread."""
    from bot.nlu_model import load_or_train  # NumPy and the classifier: only for a run that uses them

    settings = configuration.settings
    encoder = intent_encoder(settings)
    model = load_or_train(configuration.training, model_dir(settings), encoder=encoder)
    if encoder and settings.nlu.kb_encoder != "none":
        from nlu.encoder import shared_passage_encoder

        engine.use_passage_encoder(shared_passage_encoder())
    if model is not None:
        engine.use_classifier(model.classifier, model.threshold)
    elif encoder:
        from nlu.encoder import shared

        engine.use_encoder(shared(encoder))
    return model


def make_store(configuration: Configuration) -> Store:
    return make_store_for(configuration.settings)


def make_store_for(settings: Settings) -> Store:
    store = settings.store
    if store.kind == "redis":
        from bot.store.redis import RedisStore

        assert store.redis_url is not None  # checked by load_settings
        return RedisStore(store.redis_url)
    from bot.store.embedded import EmbeddedStore

    return EmbeddedStore(Path(store.path))


class Guichet:
    def __init__(self, configuration: Configuration, store: Store | None = None) -> None:
        self.configuration = configuration
        self.settings = configuration.settings
        self.store = store or make_store(configuration)
        self.engine = BuiltinEngine(
            configuration.training,
            configuration.articles,
            self.settings.default_language,
            cache_dir=model_dir(self.settings),
        )
        nlu = self.settings.nlu
        self.rasa = (
            RasaEngine(nlu.rasa_url, self.engine, timeout=nlu.rasa_timeout_seconds) if nlu.rasa_url else None
        )
        self.metrics = Metrics()
        self.desk = TicketDesk(
            self.store, self.settings, self.settings.handoff.events_url or "", self.metrics
        )
        self.policy = Policy(
            self.rasa or self.engine,
            self.engine,
            self.settings.answering,
            self.settings.organisation,
            self.desk,
            self.settings.triage,
            self.settings.email.auto_reply,
            self.metrics,
        )
        self.kb_watcher = KnowledgeBaseWatcher(self.settings.config_dir / "kb", self.engine)
        self.outbox = Outbox(
            self.store, self.settings.outbox, self.settings.handoff.retry_schedule_seconds, self.metrics
        )
        self.stats = DeskStats(
            self.store,
            self.settings.triage.business_hours.timezone,
            tuple(self.settings.handoff.queues),
            self.settings.privacy.unanswered_days,
        )
        self.manager = ConversationManager(self.store, self.policy, self.outbox, self.metrics, self.stats)
        self.http = web.Application(client_max_size=self.settings.http.max_body_bytes)
        self.http.router.add_get("/healthz", self._health)
        self.http.router.add_get("/readyz", self._ready)
        self.metrics.serve(self.http)
        self.nlu_api = NluApi(self.http, self.rasa or self.engine, self.settings.nlu.intent_threshold)
        self.queue_secrets: dict[str, list[str]] = {}
        self.level2 = Level2Api(self.http, self.store, self.manager, self.queue_secrets.get)
        self.admin = AdminApi(
            self.http, self.store, self.stats, self.settings.organisation, self._made_queue_secrets
        )
        self.channels: dict[str, Channel] = {}
        self._runner: web.AppRunner | None = None
        self._model_task: asyncio.Task[None] | None = None
        self.url = ""
        self.fanout: Fanout | None = None
        self._retention: asyncio.Task[None] | None = None
        # Files people send, by content hash (with Redis, put store.path on a shared volume).
        self.attachments_dir = Path(self.settings.store.path) / "attachments"

    def _made_queue_secrets(self) -> dict[str, str]:
        """The secrets Guichet made (no secret_env): what `guichet handoff queues` shows."""
        return {
            name: self.queue_secrets[name][0]
            for name, queue in self.settings.handoff.queues.items()
            if not queue.secret_env and name in self.queue_secrets
        }

    async def _connect_queues(self) -> None:
        """Each level-2 queue's signing secret: from the environment variable it names, or one
        Guichet makes once and keeps in its store (`guichet handoff queues` shows it)."""
        for name, queue in self.settings.handoff.queues.items():
            if queue.secret_env:
                value = os.environ.get(queue.secret_env)
                if not value:
                    raise ConfigError(
                        [
                            DataProblem(
                                Path(f"${queue.secret_env}"),
                                None,
                                f"queue {name!r}: the environment variable {queue.secret_env} is not set",
                                f"export {queue.secret_env}=whsec_…, or remove secret_env to let Guichet make one",
                            )
                        ]
                    )
                secret = value
            else:
                secret = await self.store.secret(f"queue:{name}", new_secret())
            self.queue_secrets[name] = secret.split()
            self.outbox.register_webhook(
                name, WebhookTarget(queue.url, secret.split()[0], queue.timeout_seconds)
            )

    async def _ready(self, request: web.Request) -> web.Response:
        """Readiness: this process can take traffic (its store answers, its channels run);
        a load balancer sends nothing to it otherwise. /healthz only says it is alive."""
        try:
            async with asyncio.timeout(2):
                waiting = await self.store.outbox_size()
        except (StoreError, TimeoutError) as exc:
            return web.json_response(
                {"ready": False, "reason": f"store: {exc or 'no answer in 2 s'}"}, status=503
            )
        if not self.manager.started:
            return web.json_response({"ready": False, "reason": "starting"}, status=503)
        return web.json_response({"ready": True, "outbox": waiting, "channels": sorted(self.channels)})

    async def _health(self, request: web.Request) -> web.Response:
        model = "ready" if self.engine.classifier is not None else "training"
        return web.json_response({"status": "ok", "channels": sorted(self.channels), "intent_model": model})

    async def _history(self, channel: str, conversation_id: str) -> list[TranscriptEntry]:
        return await self.store.transcript(conversation_key(channel, conversation_id))

    async def _build_channels(self) -> None:
        settings = self.settings
        if settings.webchat.enabled:
            # Channels are imported by name, only when configured.
            webchat: Any = importlib.import_module("channels.webchat")
            secret = settings.secret_key or await self.store.secret("webchat", secrets.token_hex(32))
            options = webchat.WebchatOptions(
                secret=secret.encode(),
                max_message_chars=settings.webchat.max_message_chars,
                session_seconds=settings.webchat.session_days * 86400,
                allowed_origins=settings.webchat.allowed_origins,
                session_rate=(settings.webchat.per_session.rate, settings.webchat.per_session.burst),
                ip_rate=(settings.webchat.per_ip.rate, settings.webchat.per_ip.burst),
            )
            self.channels["webchat"] = webchat.WebchatChannel(
                self.http, options, lambda cid: self._history("webchat", cid)
            )
        if settings.rest.enabled:
            rest: Any = importlib.import_module("channels.rest")
            self.channels["rest"] = rest.RestChannel(
                self.http,
                max_message_chars=settings.webchat.max_message_chars,
                reply_timeout=settings.rest.reply_timeout_seconds,
                token=settings.rest.token,
            )
        if settings.email.enabled:
            self.channels["email"] = self._email_channel()
        if settings.telegram.enabled:
            telegram: Any = importlib.import_module("channels.telegram")
            self.channels["telegram"] = telegram.TelegramChannel(self.http, settings.telegram)
        if settings.slack.enabled:
            slack: Any = importlib.import_module("channels.slack")
            self.channels["slack"] = slack.SlackChannel(self.http, settings.slack)

    def _email_channel(self) -> Channel:
        from channels.email import EmailChannel, EmailOptions
        from channels.email_auth import Authenticator, AuthOptions
        from channels.email_relay import FolderRelay, MailRelay, SmtpRelay

        mail = self.settings.email
        relay: MailRelay
        if mail.relay.host:
            relay = SmtpRelay(
                mail.relay.host,
                mail.relay.port,
                security=mail.relay.security,
                username=mail.relay.username,
                password=mail.relay.password,
                timeout=mail.relay.timeout_seconds,
                local_hostname=mail.domain,
            )
        else:
            relay = FolderRelay(Path(self.settings.store.path) / "sent-mail")
        options = EmailOptions(
            addresses=mail.addresses,
            domain=mail.domain,
            host=mail.host,
            port=mail.port,
            max_bytes=mail.max_bytes,
            max_recipients=mail.max_recipients,
            from_name=mail.from_name or self.settings.organisation,
            attachments_dir=self.attachments_dir,
        )
        auth = mail.authentication
        authenticator = Authenticator(
            AuthOptions(
                trusted_authserv_ids=auth.trusted_authserv_ids,
                dkim=auth.dkim,
                spf=auth.spf,
                dns_servers=auth.dns_servers,
                dns_timeout=auth.dns_timeout_seconds,
            )
        )
        return EmailChannel(options, relay, self._ticket_thread, self._thread_owner, authenticator)

    async def _thread_owner(self, conversation: str) -> str | None:
        """The address an email conversation belongs to: the From of the mails it admitted
        (its first one's, since only that address's proved mails join it)."""
        state = await self.store.load_state(conversation_key("email", conversation))
        owner = (state.facts.get(REPLY_CONTEXT) or {}).get("reply_address") if state else None
        return str(owner) if owner else None

    async def _ticket_thread(self, number: str, sender: str) -> str | None:
        """The email conversation of a ticket quoted in a subject, if the sender owns it."""
        ticket = await self.store.ticket(number)
        if ticket is None or (ticket.requester.email or "").lower() != sender.lower():
            return None
        channel, _, conversation = ticket.requester.conversation_key.partition(":")
        return conversation if channel == "email" else None

    def _fanout(self) -> Fanout | None:
        """With several processes (Redis), replies for a connection another process holds."""
        if self.settings.store.kind != "redis":
            return None
        from bot.store.redis import RedisStore  # only a Redis deployment loads it

        assert isinstance(self.store, RedisStore)

        async def deliver_here(name: str, message: Outbound, seq: int | None) -> bool:
            channel = self.channels.get(name)
            return await channel.deliver_here(message, seq) if channel is not None else False

        async def silent_here(name: str, inbound: Inbound) -> bool:
            channel = self.channels.get(name)
            return await channel.silent_here(inbound) if channel is not None else False

        return Fanout(self.store.url, self.store.prefix, deliver_here, silent_here)

    async def _reply_anywhere(self, channel: Channel, message: Outbound, seq: int | None) -> None:
        if not await channel.deliver_here(message, seq):
            assert self.fanout is not None
            await self.fanout.reply(channel.name, message, seq)

    async def _silent_anywhere(self, channel: Channel, inbound: Inbound) -> None:
        if not await channel.silent_here(inbound):
            assert self.fanout is not None
            await self.fanout.silent(channel.name, inbound)

    async def load_intent_model(self) -> None:
        """The intent classifier of this configuration: loaded, or trained once if the data is new.

        Training runs in a thread: the event loop keeps serving (with example similarity for
        intents) while a new configuration's model is being trained.
        """
        from bot.nlu_model import is_trained

        training = self.configuration.training
        if len(training.intents) >= 2 and not is_trained(
            training, model_dir(self.settings), intent_encoder(self.settings)
        ):
            # The first start with this data: said, so that nobody judges the bot meanwhile.
            log.info(
                "training the intent model on this configuration's examples (once, usually under a "
                "minute); until it is ready, requests are matched by their words alone"
            )
        model = await asyncio.to_thread(equip, self.engine, self.configuration)
        if model is not None:
            self.nlu_api.intent_threshold = model.threshold
            log.info(
                "intent model %s (%s), out-of-scope threshold %.3f",
                model.path.name,
                "trained" if model.trained else "loaded",
                model.threshold,
            )

    async def start(self, *, wait_for_model: bool = True) -> str:
        """Open the store, start every channel and serve HTTP; returns the base URL.

        With wait_for_model=False (`guichet run`), HTTP is up at once and the intent model
        arrives when loaded or trained."""
        if wait_for_model:
            await self.load_intent_model()
        else:
            self._model_task = asyncio.create_task(self.load_intent_model(), name="intent-model")
        await self.store.open()
        if self.rasa is not None:
            await self.rasa.start()
        try:
            await self._connect_queues()
            key = (await self.store.secret("attachments", secrets.token_hex(32))).encode()
            self.desk.attachment_key = self.level2.attachment_key = key
            self.level2.attachments_dir = self.admin.attachments_dir = self.attachments_dir
            await self._build_channels()
            self.fanout = self._fanout()
            if self.fanout is not None:
                await self.fanout.start()
            for name, channel in self.channels.items():
                if channel.connection_bound and self.fanout is not None:
                    self.outbox.register(name, functools.partial(self._reply_anywhere, channel))
                    self.manager.no_reply[name] = functools.partial(self._silent_anywhere, channel)
                else:
                    self.outbox.register(name, channel.send)
                    self.manager.no_reply[name] = channel.no_reply
                await channel.start(self.manager.receive)
            self._runner = web.AppRunner(self.http, access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(
                self._runner, self.settings.http.host, self.settings.http.port, reuse_address=True
            )
            await site.start()
        except BaseException:
            await self.store.close()
            raise
        address = self._runner.addresses[0]
        self.url = f"http://{address[0]}:{address[1]}"
        if not self.desk.events_url:
            self.desk.events_url = f"{self.url}/handoff/events"
        self.admin.write_token(Path(self.settings.store.path), self.url)
        self.manager.start()
        if self.settings.store.kind == "embedded":
            # One process owns the embedded store: what it had leased before a crash is due now.
            while await self.outbox.sweep_once(horizon_seconds=LEASE_SECONDS) == 200:
                pass
        self.outbox.start()
        if self.settings.nlu.watch_kb_seconds:
            self.kb_watcher.start(self.settings.nlu.watch_kb_seconds)
        self._retention = asyncio.create_task(self._retention_loop(), name="retention")
        return self.url

    async def _retention_loop(self, every_seconds: float = 3600.0) -> None:
        """The retention periods of `privacy:`, applied once an hour by one process at a time."""
        from bot import privacy

        while True:
            try:
                if await self.store.try_lock("retention", self.manager.owner, every_seconds / 2):
                    done = await privacy.expire(self.store, self.settings.privacy, self.attachments_dir)
                    if done.conversations or done.tickets or done.attachments:
                        log.info("retention: %s", done)
            except Exception:  # the next hour tries again; serving goes on
                log.exception("retention sweep failed")
            await asyncio.sleep(every_seconds)

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        if self._model_task is not None and not self._model_task.done():
            self._model_task.cancel()  # the thread finishes on its own; nothing waits for it
        for channel in self.channels.values():
            await channel.stop()
        if self.fanout is not None:
            await self.fanout.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.kb_watcher.stop()
        await self.manager.stop()
        await self.outbox.stop()
        if self.rasa is not None:
            await self.rasa.close()
        await self.store.close()

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        url = await self.start(wait_for_model=False)
        log.info("Guichet is ready on %s (channels: %s)", url, ", ".join(sorted(self.channels)))
        print(
            f"Guichet is ready: open {url}/ in a browser (channels: {', '.join(sorted(self.channels))}). "
            "Ctrl-C stops it.",
            flush=True,
        )
        mail: Any = self.channels.get("email")
        if mail is not None:
            relay = self.settings.email.relay
            where = (
                f"through {relay.host}:{relay.port}"
                if relay.host
                else f"written to {Path(self.settings.store.path) / 'sent-mail'}"
            )
            print(
                f"Email: SMTP for {', '.join(mail.options.addresses)} on {mail.options.host}:{mail.port}; "
                f"replies are {where}.",
                flush=True,
            )
        if self.settings.handoff.queues:
            queues = ", ".join(f"{n} → {q.url}" for n, q in self.settings.handoff.queues.items())
            print(
                f"Level 2: tickets go to {queues}; `guichet handoff queues` shows their signing secrets.",
                flush=True,
            )
        await stop.wait()
        print("Stopping…", flush=True)
        await self.stop()
