"""Settings: read once from `guichet.yml` and the environment into a typed, frozen object.

Secrets never live in the file: they come from environment variables only. A wrong value
fails at start-up with the file, the line and a fix (`guichet check` prints them all).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from handoff.config import HandoffSettings
from nlu import yaml12
from nlu.problems import DataProblem
from triage.config import TriageSettings

SETTINGS_FILE = "guichet.yml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(64 * 1024, ge=1024)


class StoreSettings(_Frozen):
    kind: Literal["embedded", "redis"] = "embedded"
    path: str = "guichet-data"
    redis_url: str | None = None  # only from GUICHET_REDIS_URL: it may carry a password


class RateLimit(_Frozen):
    rate: float = Field(gt=0, description="messages per second, sustained")
    burst: int = Field(ge=1, description="messages allowed at once")


class WebchatSettings(_Frozen):
    enabled: bool = True
    allowed_origins: tuple[str, ...] = ()
    max_message_chars: int = Field(2000, ge=1, le=100_000)
    per_session: RateLimit = RateLimit(rate=1.0, burst=10)
    per_ip: RateLimit = RateLimit(rate=20.0, burst=200)
    session_days: int = Field(30, ge=1)


class RestSettings(_Frozen):
    enabled: bool = True
    reply_timeout_seconds: float = Field(10.0, gt=0)
    # Without a token the REST channel is open: whoever knows or guesses a `sender` reads and
    # continues that conversation. With one (only from GUICHET_REST_TOKEN), every request must
    # carry it, as ?token=… (Rasa's --auth-token) or Authorization: Bearer ….
    token: str | None = Field(None, repr=False)


class RelaySettings(_Frozen):
    """Where outgoing mail goes. Without a host, mail is written as .eml files under
    <store.path>/sent-mail (the embedded default: nothing leaves the machine)."""

    host: str | None = None
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = Field(None, repr=False)  # only from GUICHET_SMTP_PASSWORD
    timeout_seconds: float = Field(30.0, gt=0)


class AutoReplyLimits(_Frozen):
    """Caps on automatic replies (STANDARDS.md: per sender and globally, as Zammad does)."""

    per_sender: int = Field(10, ge=1)
    total: int = Field(500, ge=1)
    window_seconds: int = Field(600, ge=1)


class MailAuthSettings(_Frozen):
    """How a mail's From is proved before it may act on a ticket (channels/email_auth.py)."""

    # The desk's MX: its Authentication-Results headers (RFC 8601) are believed. Name it when
    # Guichet sits behind a relay; the MX must remove such headers from outside (Postfix,
    # OpenDMARC and rspamd do).
    trusted_authserv_ids: tuple[str, ...] = ()
    dkim: bool = True  # check DKIM signatures here (DNS)
    # SPF for the connecting address: only when Guichet receives mail straight from the
    # Internet. Behind a relay, the address is the relay's, and SPF says nothing of the sender.
    spf: bool = False
    dns_servers: tuple[str, ...] = ()  # "host" or "host:port"; empty: the system's resolver
    dns_timeout_seconds: float = Field(5.0, gt=0, le=30)


class EmailSettings(_Frozen):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=0, le=65535)
    addresses: tuple[str, ...] = ("support@example.com",)
    domain: str = "example.com"  # ours: Message-IDs and loop detection
    from_name: str | None = None  # default: the organisation
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(5, ge=1, le=100)
    auto_reply: AutoReplyLimits = AutoReplyLimits()
    relay: RelaySettings = RelaySettings()
    authentication: MailAuthSettings = MailAuthSettings()


class TelegramSettings(_Frozen):
    enabled: bool = False
    mode: Literal["webhook", "polling"] = "polling"
    webhook_path: str = "/telegram/webhook"
    # The public HTTPS address Telegram should post to (webhook mode); Guichet registers it
    # with setWebhook at start. Without it, register the webhook yourself.
    public_url: str | None = None
    api_base: str = "https://api.telegram.org"  # a test points it at a local Bot API mimic
    per_chat_per_second: float = Field(1.0, gt=0)
    per_group_per_minute: int = Field(20, ge=1)
    global_per_second: float = Field(30.0, gt=0)
    max_attachment_bytes: int = Field(20 * 1024 * 1024, ge=1)
    token: str | None = Field(None, repr=False)  # only from GUICHET_TELEGRAM_TOKEN
    webhook_secret: str | None = Field(None, repr=False)  # only from GUICHET_TELEGRAM_WEBHOOK_SECRET


class SlackSettings(_Frozen):
    enabled: bool = False
    mode: Literal["events", "socket"] = "events"
    events_path: str = "/slack/events"
    api_base: str = "https://slack.com/api/"  # a test points it at a local Web API mimic
    bot_token: str | None = Field(None, repr=False)  # only from GUICHET_SLACK_BOT_TOKEN
    signing_secret: str | None = Field(None, repr=False)  # only from GUICHET_SLACK_SIGNING_SECRET
    app_token: str | None = Field(None, repr=False)  # only from GUICHET_SLACK_APP_TOKEN (Socket Mode)


class PrivacySettings(_Frozen):
    """How long personal data is kept (GDPR's storage limitation); bot/privacy.py applies it
    once an hour, on both stores."""

    transcripts_days: int = Field(365, ge=1, description="a conversation idle this long is deleted")
    attachments_days: int = Field(180, ge=1, description="files people sent")
    contacts_days: int = Field(730, ge=1, description="a ticket closed this long ago is anonymised")
    unanswered_days: int = Field(90, ge=1, description="questions nobody could answer, kept for the report")


class AnsweringSettings(_Frozen):
    answer_threshold: float = Field(0.5, ge=0, le=1)
    suggest_threshold: float = Field(0.3, ge=0, le=1)
    close_margin: float = Field(0.08, ge=0, le=1)
    max_suggestions: int = Field(3, ge=2, le=5)
    smalltalk_threshold: float = Field(0.6, ge=0, le=1)
    # An article that answers an intent understood this surely (nlu/ examples, the classifier's
    # calibrated confidence) is as sure as that intent, whatever words it shares with the message.
    intent_answer_threshold: float = Field(0.7, ge=0, le=1)
    intent_answer_margin: float = Field(0.1, ge=0, le=1)  # ... and ahead of the next intent by this
    # Not that sure (below the out-of-scope threshold), but at least this likely: the intent's
    # articles come first in the choice list, never answered at once ("mon mdp marche pu").
    intent_suggest_threshold: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> AnsweringSettings:
        if self.suggest_threshold > self.answer_threshold:
            raise ValueError("suggest_threshold must not be above answer_threshold")
        if self.intent_suggest_threshold > self.intent_answer_threshold:
            raise ValueError("intent_suggest_threshold must not be above intent_answer_threshold")
        return self


class NluSettings(_Frozen):
    engine: Literal["builtin", "rasa"] = "builtin"
    rasa_url: str | None = None  # GUICHET_RASA_URL, e.g. http://127.0.0.1:5005
    rasa_timeout_seconds: float = Field(2.0, gt=0)
    intent_threshold: float = Field(0.5, ge=0, le=1, description="below it, an intent is out of scope")
    model_dir: str | None = None  # where trained intent models are kept (default: <store.path>/nlu)
    # A sentence encoder beside the word features: paraphrases with no word in common with the
    # examples are understood, at a few milliseconds a message. use-multilingual-3: French and
    # English. all-minilm-l6-v2: English only, better with few examples (make .venv/.minilm);
    # use-multilingual-3+all-minilm-l6-v2: both side by side (nlu/encoder.py);
    # multilingual-e5-small (make .venv/.e5), alone or beside USE: French with few examples.
    encoder: Literal[
        "none",
        "use-multilingual-3",
        "all-minilm-l6-v2",
        "use-multilingual-3+all-minilm-l6-v2",
        "multilingual-e5-small",
        "use-multilingual-3+multilingual-e5-small",
    ] = "none"
    # A second encoder for the knowledge base only, beside `encoder` (which it needs):
    # multilingual-e5-small finds the right article more often, at about 12 ms a message
    # (make .venv/.e5; nlu/encoder.py PassageEncoder).
    kb_encoder: Literal["none", "multilingual-e5-small"] = "none"
    watch_kb_seconds: float = Field(2.0, ge=0, description="how often to look for edited articles; 0: never")


class OutboxSettings(_Frozen):
    max_attempts: int = Field(10, ge=1)
    base_delay_seconds: float = Field(1.0, gt=0)
    max_delay_seconds: float = Field(600.0, gt=0)


class TicketSettings(_Frozen):
    number_format: str = "HD-{year}-{number:06d}"

    @model_validator(mode="after")
    def _formats(self) -> TicketSettings:
        try:
            self.number_format.format(year=2026, number=42)
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"number_format cannot be filled with year and number: {exc}") from exc
        return self


class Settings(_Frozen):
    organisation: str = "Help desk"
    default_language: Literal["fr", "en"] = "fr"
    http: HttpSettings = HttpSettings()
    store: StoreSettings = StoreSettings()
    webchat: WebchatSettings = WebchatSettings()
    rest: RestSettings = RestSettings()
    email: EmailSettings = EmailSettings()
    telegram: TelegramSettings = TelegramSettings()
    slack: SlackSettings = SlackSettings()
    answering: AnsweringSettings = AnsweringSettings()
    nlu: NluSettings = NluSettings()
    outbox: OutboxSettings = OutboxSettings()
    tickets: TicketSettings = TicketSettings()
    triage: TriageSettings = TriageSettings()
    handoff: HandoffSettings = HandoffSettings()
    privacy: PrivacySettings = PrivacySettings()
    # Not settings of the file: where it came from and the secret key from the environment.
    config_dir: Path = Path("config")
    secret_key: str | None = Field(None, repr=False)


# Environment variables that override the file: name → (path in the settings, converter).
ENVIRONMENT: Mapping[str, tuple[tuple[str, ...], Any]] = {
    "GUICHET_HTTP_HOST": (("http", "host"), str),
    "GUICHET_HTTP_PORT": (("http", "port"), int),
    "GUICHET_DATA_DIR": (("store", "path"), str),
    "GUICHET_REDIS_URL": (("store", "redis_url"), str),
    "GUICHET_SECRET_KEY": (("secret_key",), str),
    "GUICHET_RASA_URL": (("nlu", "rasa_url"), str),
    "GUICHET_MODEL_DIR": (("nlu", "model_dir"), str),
    "GUICHET_SMTP_HOST": (("email", "host"), str),
    "GUICHET_SMTP_PORT": (("email", "port"), int),
    "GUICHET_SMTP_PASSWORD": (("email", "relay", "password"), str),
    "GUICHET_TELEGRAM_TOKEN": (("telegram", "token"), str),
    "GUICHET_TELEGRAM_WEBHOOK_SECRET": (("telegram", "webhook_secret"), str),
    "GUICHET_SLACK_BOT_TOKEN": (("slack", "bot_token"), str),
    "GUICHET_SLACK_SIGNING_SECRET": (("slack", "signing_secret"), str),
    "GUICHET_SLACK_APP_TOKEN": (("slack", "app_token"), str),
    "GUICHET_REST_TOKEN": (("rest", "token"), str),
}

# Keys that hold secrets: refused in the file (they come from the environment above).
SECRET_KEYS: tuple[tuple[str, ...], ...] = (
    ("secret_key",),
    ("store", "redis_url"),
    ("email", "relay", "password"),
    ("telegram", "token"),
    ("telegram", "webhook_secret"),
    ("slack", "bot_token"),
    ("slack", "signing_secret"),
    ("slack", "app_token"),
    ("rest", "token"),
)


def load_settings(
    config_dir: Path, environ: Mapping[str, str] | None = None
) -> tuple[Settings | None, list[DataProblem]]:
    """Settings from config_dir/guichet.yml (optional) and the environment, or the problems."""
    environ = os.environ if environ is None else environ
    path = config_dir / SETTINGS_FILE
    raw: dict[str, Any] = {}
    root: yaml.Node | None = None
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8")
            root = yaml12.compose(text)  # as the NLU files: YAML 1.2, where `no` is a word
            loaded = yaml12.load(text)
        except (OSError, UnicodeDecodeError) as exc:
            return None, [DataProblem(path, None, f"cannot read the file: {exc}", "save it as UTF-8 text")]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            return None, [
                DataProblem(
                    path,
                    mark.line + 1 if mark else None,
                    f"not valid YAML: {exc}",
                    "check the indentation (spaces, not tabs) and quote values with ':'",
                )
            ]
        if loaded is not None and not isinstance(loaded, dict):
            return None, [
                DataProblem(path, 1, "the settings file must be a mapping", "write one 'key: value' per line")
            ]
        raw = loaded or {}
        try:
            raw = _expand(raw, environ)
        except KeyError as exc:
            name = exc.args[0]
            return None, [
                DataProblem(
                    path,
                    _line_with(text, "${" + name),
                    f"${{{name}}} is used but the environment variable {name} is not set",
                    f"export {name}=…, or give a default: ${{{name}:-value}}",
                )
            ]
        for where in SECRET_KEYS:
            if _has(raw, where):
                variable = next(v for v, (w, _) in ENVIRONMENT.items() if w == where)
                return None, [
                    DataProblem(
                        path,
                        _line_of(root, where),
                        f"{'.'.join(where)}: secrets do not belong in the settings file",
                        f"remove it and set {variable} in the environment",
                    )
                ]
    problems: list[DataProblem] = []
    for variable, (where, convert) in ENVIRONMENT.items():
        if variable not in environ:
            continue
        try:
            value = convert(environ[variable])
        except ValueError:
            problems.append(
                DataProblem(
                    Path(f"${variable}"),
                    None,
                    f"{variable}={environ[variable]!r} is not valid",
                    f"set {variable} to a {convert.__name__}",
                )
            )
            continue
        target = raw
        for part in where[:-1]:
            target = target.setdefault(part, {})
        target[where[-1]] = value
    if raw.get("store", {}).get("redis_url") and "kind" not in raw.get("store", {}):
        raw["store"]["kind"] = "redis"
    if raw.get("nlu", {}).get("rasa_url") and "engine" not in raw.get("nlu", {}):
        raw["nlu"]["engine"] = "rasa"
    raw["config_dir"] = config_dir
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(str(p) for p in error["loc"])
            problems.append(
                DataProblem(
                    path, _line_of(root, loc), f"{'.'.join(loc)}: {error['msg']}", _fix_for(error, loc)
                )
            )
        return None, problems
    if settings.nlu.engine == "rasa" and not settings.nlu.rasa_url:
        problems.append(
            DataProblem(
                path,
                _line_of(root, ("nlu", "engine")),
                "nlu.engine is rasa but no Rasa URL is set",
                "export GUICHET_RASA_URL=http://127.0.0.1:5005, or use engine: builtin",
            )
        )
    if settings.store.kind == "redis" and not settings.store.redis_url:
        problems.append(
            DataProblem(
                path,
                _line_of(root, ("store", "kind")),
                "store.kind is redis but no Redis URL is set",
                "export GUICHET_REDIS_URL=redis://host:6379/0, or use kind: embedded",
            )
        )
    problems += missing_channel_secrets(settings)
    return (None if problems else settings), problems


def missing_channel_secrets(settings: Settings) -> list[DataProblem]:
    """The tokens an enabled chat channel needs and the environment does not give: found by
    `guichet check`, not at the first message."""
    needed: list[tuple[str, str, str | None, str]] = []
    slack, telegram = settings.slack, settings.telegram
    if slack.enabled:
        needed.append(
            ("slack", "GUICHET_SLACK_BOT_TOKEN", slack.bot_token, "xoxb-…, the app's Bot User OAuth Token")
        )
        if slack.mode == "events":
            needed.append(
                ("slack", "GUICHET_SLACK_SIGNING_SECRET", slack.signing_secret, "the app's Signing Secret")
            )
        else:
            needed.append(("slack", "GUICHET_SLACK_APP_TOKEN", slack.app_token, "xapp-…, an app-level token"))
    if telegram.enabled:
        needed.append(
            ("telegram", "GUICHET_TELEGRAM_TOKEN", telegram.token, "123456:ABC…, the token @BotFather gave")
        )
        if telegram.mode == "webhook":
            needed.append(
                (
                    "telegram",
                    "GUICHET_TELEGRAM_WEBHOOK_SECRET",
                    telegram.webhook_secret,
                    "a random string of 1-256 A-Z a-z 0-9 _ -",
                )
            )
    return [
        DataProblem(
            Path(f"${variable}"),
            None,
            f"{channel} is enabled but {variable} is not set",
            f"export {variable}=<{what}>, or set {channel}.enabled: false",
        )
        for channel, variable, value, what in needed
        if not value
    ]


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, environ: Mapping[str, str]) -> Any:
    """`${NAME}` and `${NAME:-default}` in the file's texts, from the environment (as Rasa's
    endpoints.yml and Docker Compose do): one file for a laptop and for a cluster."""
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is None:
                raise KeyError(name)
            return default

        return _VARIABLE.sub(variable, value)
    if isinstance(value, dict):
        return {k: _expand(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, environ) for v in value]
    return value


def _line_with(text: str, needle: str) -> int | None:
    return next((n for n, line in enumerate(text.splitlines(), start=1) if needle in line), None)


def _has(raw: Mapping[str, Any], where: tuple[str, ...]) -> bool:
    node: Any = raw
    for part in where:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _line_of(root: yaml.Node | None, loc: tuple[str, ...]) -> int | None:
    """The 1-based line of the deepest key of loc that exists in the YAML document."""
    node = root
    line: int | None = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if key.value == part:
                line = key.start_mark.line + 1
                node = value
                break
        else:
            break
    return line


def _fix_for(error: Mapping[str, Any], loc: tuple[str, ...]) -> str:
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{hint}known keys here: {', '.join(sorted(known))}"
    if error["type"] == "literal_error":
        return f"use one of the allowed values ({error['msg'].split('Input should be ')[-1]})"
    return "correct the value as the message says (see config/guichet.yml in the repository for an example)"


def _known_keys(loc: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in loc:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    secret = {w[-1] for w in SECRET_KEYS}
    return [name for name in model.model_fields if name not in {"config_dir", *secret}]
