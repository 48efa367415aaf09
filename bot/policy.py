"""The answering policy: what the bot says next, given what it remembers and what it understood.

The ladder: small talk when the message is small talk; otherwise the knowledge base — one
article when one is clearly right, a short choice list when a few are close, and when none
fits, say so and offer a ticket. Choices come back either as a button payload or as the
number or title typed on a channel without buttons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.messages import Choice, Inbound, Outbound
from bot.settings import AnsweringSettings
from bot.store.base import ConversationState
from bot.texts import say
from nlu.engine import BuiltinEngine, NluEngine, Parse
from nlu.retrieval import KbMatch
from nlu.text import fold

SMALLTALK = frozenset(
    {"greet", "goodbye", "thanks", "help", "affirm", "deny", "request_human", "ticket_status"}
)

NumberAllocator = Callable[[], Awaitable[str]]


class Policy:
    def __init__(
        self,
        engine: NluEngine,
        builtin: BuiltinEngine,
        answering: AnsweringSettings,
        organisation: str,
        open_ticket: NumberAllocator,
    ) -> None:
        self.engine = engine
        self.builtin = builtin  # holds the knowledge base's articles, whichever engine understands
        self.answering = answering
        self.organisation = organisation
        self.open_ticket = open_ticket

    async def handle(
        self, state: ConversationState, inbound: Inbound
    ) -> tuple[ConversationState, list[Outbound]]:
        parse = await self.engine.parse(inbound.text, inbound.language or state.language)
        language = parse.language
        turn = _Turn(inbound, language)
        if state.language != language:
            state = dataclasses.replace(state, language=language)

        pending = state.pending
        if pending.get("kind") == "choice":
            payload = _picked(inbound, pending.get("options", []))
            state = dataclasses.replace(state, pending={})
            if payload is not None:
                return await self._act(state, turn, payload)
            # Anything else is a new request: answer it as one.

        intent = parse.intent
        best_kb = parse.kb_matches[0].score if parse.kb_matches else 0.0
        if (
            intent is not None
            and intent.name in SMALLTALK
            and intent.confidence >= self.answering.smalltalk_threshold
            and intent.confidence >= best_kb
            # A knowledge-base answer that is clearly right wins over small talk around it
            # ("bonjour, mon imprimante n'imprime plus" deserves the printer article).
            and best_kb < self.answering.answer_threshold
        ):
            return await self._smalltalk(state, turn, intent.name)
        return self._answer_from_kb(state, turn, parse)

    async def _smalltalk(
        self, state: ConversationState, turn: _Turn, intent: str
    ) -> tuple[ConversationState, list[Outbound]]:
        lang = turn.language
        if intent == "greet":
            return state, [turn.reply(say("greet", lang, organisation=self.organisation))]
        if intent in ("goodbye", "thanks", "help", "out_of_scope"):
            return state, [turn.reply(say(intent, lang))]
        if intent == "request_human":
            if not state.facts.get("last_request"):
                return state, [turn.reply(say("describe_first", lang))]
            return self._offer_ticket(state, turn, "offer_ticket")
        if intent == "ticket_status":
            tickets = state.facts.get("tickets", [])
            if not tickets:
                return state, [turn.reply(say("no_ticket", lang))]
            return state, [
                turn.reply(say("ticket_status", lang, tickets=", ".join(t["number"] for t in tickets)))
            ]
        return state, [turn.reply(say("ack", lang))]

    def _answer_from_kb(
        self, state: ConversationState, turn: _Turn, parse: Parse
    ) -> tuple[ConversationState, list[Outbound]]:
        matches = parse.kb_matches
        settings = self.answering
        state = dataclasses.replace(state, facts={**state.facts, "last_request": turn.inbound.text})
        if (
            matches
            and matches[0].score >= settings.answer_threshold
            and (len(matches) == 1 or matches[0].score - matches[1].score >= settings.close_margin)
        ):
            return self._article(state, turn, matches[0].article_id, matches[0].language)
        close = [
            m
            for m in matches
            if m.score >= settings.suggest_threshold
            and matches[0].score - m.score < settings.close_margin * 2
        ][: settings.max_suggestions]
        if len(close) >= 2 or (close and close[0].score >= settings.suggest_threshold):
            return self._choose(state, turn, close)
        return self._offer_ticket(state, turn, "no_answer")

    def _article(
        self, state: ConversationState, turn: _Turn, article_id: str, language: str
    ) -> tuple[ConversationState, list[Outbound]]:
        article = self.builtin.article(language, article_id)
        if article is None:  # the knowledge base changed since the choice was offered
            return self._offer_ticket(state, turn, "no_answer")
        suggested = [*state.facts.get("suggested", []), article.id][-20:]
        state = dataclasses.replace(state, facts={**state.facts, "suggested": suggested})
        return state, [turn.reply(f"{article.title}\n\n{article.body}")]

    def _choose(
        self, state: ConversationState, turn: _Turn, matches: Sequence[KbMatch]
    ) -> tuple[ConversationState, list[Outbound]]:
        lang = turn.language
        choices = [Choice(m.title, f"article:{m.language}:{m.article_id}") for m in matches]
        choices.append(Choice(say("none_of_these", lang), "none"))
        state = dataclasses.replace(state, pending=_pending(choices))
        return state, [turn.reply(say("choose", lang), choices)]

    def _offer_ticket(
        self, state: ConversationState, turn: _Turn, text_key: str
    ) -> tuple[ConversationState, list[Outbound]]:
        lang = turn.language
        choices = [Choice(say("yes_open", lang), "ticket:yes"), Choice(say("no_thanks", lang), "ticket:no")]
        state = dataclasses.replace(state, pending=_pending(choices))
        return state, [turn.reply(say(text_key, lang), choices)]

    async def _act(
        self, state: ConversationState, turn: _Turn, payload: str
    ) -> tuple[ConversationState, list[Outbound]]:
        lang = turn.language
        if payload.startswith("article:"):
            _, language, article_id = payload.split(":", 2)
            return self._article(state, turn, article_id, language)
        if payload == "none":
            return self._offer_ticket(state, turn, "offer_ticket")
        if payload == "ticket:yes":
            number = await self.open_ticket()
            ticket: dict[str, Any] = {
                "number": number,
                "request": state.facts.get("last_request", ""),
                "opened_at": datetime.now(UTC).isoformat(),
                "status": "open",
            }
            facts = {**state.facts, "tickets": [*state.facts.get("tickets", []), ticket]}
            return dataclasses.replace(state, facts=facts), [
                turn.reply(say("ticket_opened", lang, number=number))
            ]
        return state, [turn.reply(say("ack", lang))]


@dataclasses.dataclass(frozen=True, slots=True)
class _Turn:
    inbound: Inbound
    language: str

    def reply(self, text: str, choices: Sequence[Choice] = ()) -> Outbound:
        return Outbound(
            channel=self.inbound.channel,
            conversation_id=self.inbound.conversation_id,
            text=text,
            choices=tuple(choices),
            language=self.language,
            reply_to=self.inbound.platform_message_id,
        )


def _pending(choices: Sequence[Choice]) -> dict[str, Any]:
    return {"kind": "choice", "options": [{"title": c.title, "payload": c.payload} for c in choices]}


_YES = frozenset(
    {"oui", "yes", "ok", "okay", "d'accord", "daccord", "ouais", "yep", "y", "o", "volontiers", "sure"}
)
_NO = frozenset({"non", "no", "nope", "n", "pas besoin", "non merci", "no thanks"})


def _picked(inbound: Inbound, options: Sequence[dict[str, str]]) -> str | None:
    """The payload the person picked: a button, a number, the title typed, or yes/no."""
    payloads = [o["payload"] for o in options]
    if inbound.payload is not None:
        return inbound.payload if inbound.payload in payloads else None
    if inbound.text in payloads:  # Rasa-style front ends send a button's payload as the text
        return inbound.text
    text = fold(inbound.text).strip(" .!")
    if text.isdigit() and 1 <= int(text) <= len(options):
        return payloads[int(text) - 1]
    for option in options:
        if fold(option["title"]) == text:
            return option["payload"]
    if "ticket:yes" in payloads:
        if text in _YES:
            return "ticket:yes"
        if text in _NO:
            return "ticket:no"
    return None
