"""The answering policy: what the bot says next, given what it remembers and what it understood.

The conversation is in one of four modes. "bot": the ladder — small talk when the message is
small talk; otherwise the knowledge base (one article when one is clearly right, then "did
this help?"; a short choice list when a few are close; when none fits, say so and offer a
ticket). "qualifying": the short dialogue that asks what a ticket still needs. "handed_off"
and "human": level 2 holds the ticket; the bot relays and only answers "where is my
ticket?" and "cancel". Level-2 events arrive as messages of the conversation, in order.
Choices come back either as a button payload or as the number or title typed on a channel
without buttons.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from bot.desk import Outcome, TicketDesk
from bot.messages import Choice, Inbound, Outbound
from bot.metrics import Metrics
from bot.settings import AnsweringSettings, AutoReplyLimits
from bot.store.base import ConversationState
from bot.texts import say
from nlu.engine import BuiltinEngine, NluEngine, Parse, contact_only, understood_articles
from nlu.retrieval import KbMatch
from nlu.text import STOPWORDS, fold, words
from triage.assess import assess_aside
from triage.config import TriageSettings
from triage.slots import corrected, missing, parse_answer, question

log = logging.getLogger("guichet.policy")

EMAIL = "email"
UNANSWERED = "unanswered_question"

SMALLTALK = frozenset(
    {"greet", "goodbye", "thanks", "help", "affirm", "deny", "request_human", "ticket_status"}
)


class Policy:
    def __init__(
        self,
        engine: NluEngine,
        builtin: BuiltinEngine,
        answering: AnsweringSettings,
        organisation: str,
        desk: TicketDesk,
        triage: TriageSettings,
        auto_reply: AutoReplyLimits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.auto_reply = auto_reply or AutoReplyLimits()
        self.metrics = metrics or Metrics()
        self.engine = engine
        self.builtin = builtin  # holds the knowledge base's articles, whichever engine understands
        self.answering = answering
        self.organisation = organisation
        self.desk = desk
        self.triage = triage

    async def handle(self, state: ConversationState, inbound: Inbound) -> Outcome:
        if inbound.sender == "user" and inbound.raw.get("attachments"):
            # Kept for the ticket this request may become (level 2 sees them in the handoff).
            kept = [*state.facts.get("attachments", []), *inbound.raw["attachments"]][-20:]
            state = dataclasses.replace(state, facts={**state.facts, "attachments": kept})
        if inbound.channel == EMAIL:
            return await self._by_email(state, inbound)
        return await self._handle(state, inbound)

    async def _handle(self, state: ConversationState, inbound: Inbound) -> Outcome:
        if inbound.sender == "agent":
            return await self.desk.level2_event(state, inbound)
        parse = await self.engine.parse(inbound.text, inbound.language or state.language)
        pending = state.pending
        payload = _picked(inbound, pending.get("options", [])) if pending.get("kind") == "choice" else None
        # A picked choice, or an answer to a qualification question ("PC-123", an email),
        # says nothing of the language: the conversation keeps its own.
        keep = payload is not None or state.mode == "qualifying"
        language = state.language if keep and state.language else parse.language
        turn = _Turn(inbound, language)
        if state.language != language:
            state = dataclasses.replace(state, language=language)

        if pending.get("kind") == "choice":
            state = dataclasses.replace(state, pending={})
            if payload is not None:
                return await self._act(state, turn, payload, parse)
            # Anything else is a new request (or, with level 2, words for the technician).
        linked = await self._link(state, turn)
        if linked is not None:
            return linked
        if state.mode == "qualifying":
            return await self._qualify(state, turn, parse)
        if state.mode in ("handed_off", "human"):
            if await self.desk.active_ticket(state) is not None:
                return await self._with_level2(state, turn, parse)
            # Level 2 closed the ticket meanwhile: the bot answers again.
            state = dataclasses.replace(state, mode="bot", facts={**state.facts, "active_ticket": None})

        intent = parse.intent
        if _is_cancel(inbound.text):  # with a ticket open, level 2 holds the conversation (above)
            return Outcome(state, [turn.reply(say("nothing_to_cancel", turn.language))])
        if fold(inbound.text).strip(" .!?") in _TICKET_ASK:
            # What the articles tell a chat to reply when they did not help: the ticket, at once
            # (it was taken for a question, and answered with the article on tickets).
            return await self._smalltalk(state, turn, "request_human", parse)
        if intent is None and contact_only(parse.text, parse.entities):
            return self._contact_noted(state, turn, parse)
        parse = dataclasses.replace(parse, kb_matches=self._matches(parse))
        best_kb = parse.kb_matches[0].score if parse.kb_matches else 0.0
        if (
            intent is not None
            and intent.name in SMALLTALK
            and intent.confidence >= self._smalltalk_floor()
            and intent.confidence >= best_kb
            # A knowledge-base answer that is clearly right wins over small talk around it
            # ("bonjour, mon imprimante n'imprime plus" deserves the printer article).
            and best_kb < self.answering.answer_threshold
        ):
            return await self._smalltalk(state, turn, intent.name, parse)
        if _ticket_number(parse) is not None:
            return await self._status(state, turn, parse)
        return self._answer_from_kb(state, turn, parse)

    # Email --------------------------------------------------------------------------------
    async def _by_email(self, state: ConversationState, inbound: Inbound) -> Outcome:
        """Email is not a chat: each new mail opens a ticket at once and gets ONE automatic
        reply (what the knowledge base suggests, the ticket number); a follow-up in the
        thread goes to level 2 without a reply; mail the rules of RFC 3834 refuse (bounces,
        out-of-office, lists, robots, our own mail) is kept and never answered."""
        outcome = await self._email_turn(state, inbound)
        replies = outcome.replies
        if replies and inbound.sender == "user" and not await self._may_auto_reply(inbound):
            replies = []
        return Outcome(outcome.state, _one_mail(replies), outcome.effects)

    async def _email_turn(self, state: ConversationState, inbound: Inbound) -> Outcome:
        if inbound.sender == "agent":
            return await self.desk.level2_event(state, inbound)
        details = inbound.raw.get("email") or {}
        refusal = details.get("auto_reply_refusal")
        active = await self.desk.active_ticket(state)
        if refusal:
            log.info("an email gets no reply: %s", refusal, extra={"conversation": inbound.conversation_key})
            if active is not None and not str(refusal).startswith(_OUR_OWN):
                # A bounce or an out-of-office about the agent's mail: level 2 should know.
                return await self.desk.relay_to_level2(
                    state, inbound, state.language or "fr", acknowledge=False
                )
            return Outcome(state, [])
        pending = state.pending
        if pending.get("kind") == "choice" and _picked(inbound, pending.get("options", [])) is not None:
            return await self._handle(state, inbound)  # "oui" to "is it solved?", or a number
        subject = _RE_PREFIX.sub("", str(details.get("subject") or "")).strip()
        text = inbound.text
        description = text if not subject or fold(subject) in fold(text) else f"{subject}\n{text}"
        parse = await self.engine.parse(description, inbound.language or state.language)
        parse = dataclasses.replace(parse, kb_matches=self._matches(parse))
        language = parse.language
        state = dataclasses.replace(state, language=language)
        turn = _Turn(inbound, language)
        if active is not None:
            if _is_cancel(text):
                return await self.desk.cancel(state, inbound, language)
            if mail_says_solved(text):  # "résolu", as the automatic reply asks, or a few words more
                facts = {**state.facts, "solved_at_level1": int(state.facts.get("solved_at_level1", 0)) + 1}
                state = dataclasses.replace(state, facts=facts)
                return await self.desk.confirm_resolution(state, inbound, language, active.number, True)
            if _asks_status(text):
                return await self._status(state, turn, parse)
            return await self.desk.relay_to_level2(state, inbound, language, acknowledge=False)
        intent = parse.intent
        best_kb = parse.kb_matches[0].score if parse.kb_matches else 0.0
        if (
            intent is not None
            and intent.name in ("thanks", "goodbye")
            and intent.confidence >= self._smalltalk_floor()
            and best_kb < self.answering.suggest_threshold
        ):
            return Outcome(state, [])  # "merci !" needs no ticket and no automatic reply
        if _asks_status(text):
            return await self._status(state, turn, parse)
        return await self._email_ticket(state, turn, description, parse)

    async def _email_ticket(
        self, state: ConversationState, turn: _Turn, description: str, parse: Parse
    ) -> Outcome:
        settings = self.answering
        lang = turn.language
        matches = [m for m in parse.kb_matches if m.score >= settings.suggest_threshold][
            : settings.max_suggestions
        ]
        self.metrics.confidence.labels(EMAIL).observe(parse.kb_matches[0].score if parse.kb_matches else 0.0)
        confident = (
            bool(matches)
            and matches[0].score >= settings.answer_threshold
            and (len(matches) == 1 or matches[0].score - matches[1].score >= settings.close_margin)
        )
        if confident:
            matches = matches[:1]
        else:  # as in the chat: the likely intents' articles first among those that may help
            merged = {
                m.article_id: m for m in (*probable_articles(parse, self.builtin, settings, lang), *matches)
            }
            matches = list(merged.values())[: settings.max_suggestions]
        if not matches:
            self.metrics.unanswered.labels(EMAIL, lang).inc()
            state = dataclasses.replace(state, facts={**state.facts, UNANSWERED: description})
        suggested = [*state.facts.get("suggested", []), *(m.article_id for m in matches)][-20:]
        state = dataclasses.replace(
            state, facts={**state.facts, "last_request": description, "suggested": suggested}
        )
        draft: dict[str, Any] = {"description": description, "reason": "email"}
        claimed = (turn.inbound.raw.get("email") or {}).get("from")
        if turn.inbound.user_email or claimed:  # a claimed From is a contact, flagged unverified
            draft["email"] = turn.inbound.user_email or claimed
        opened = await self.desk.open_ticket(state, turn.inbound, lang, draft, parse)
        number = str(opened.state.facts.get("active_ticket") or "")
        name = turn.inbound.user_name
        parts = [say("email_intro", lang, name=f" {name}" if name else "")]
        articles = [(m, self.builtin.article(m.language, m.article_id)) for m in matches]
        if confident and articles[0][1] is not None:
            article = articles[0][1]
            parts += [say("email_article", lang), f"{article.title}\n\n{for_mail(article.body)}"]
        elif articles:
            parts.append(say("email_articles", lang))
            parts += [f"• {a.title}\n{_excerpt(for_mail(a.body))}" for _, a in articles if a is not None]
        parts += [r.text for r in opened.replies]
        footer = "email_footer" if confident else "email_footer_plain"
        parts.append(say(footer, lang, number=number, organisation=self.organisation))
        return Outcome(opened.state, [turn.reply("\n\n".join(parts))], opened.effects)

    async def _may_auto_reply(self, inbound: Inbound) -> bool:
        """The caps of STANDARDS.md: so many automatic replies per sender and in all, per window."""
        address = str((inbound.raw.get("reply_context") or {}).get("auto_reply_to") or "").lower()
        if not address:
            return False
        limits = self.auto_reply
        window = int(time.time() // limits.window_seconds)
        store = self.desk.store
        # The counter is named by a hash: no address is kept for the cap's sake.
        sender = hashlib.sha256(address.encode()).hexdigest()[:20]
        if await store.count(f"auto-reply:{sender}:{window}", 1, limits.window_seconds) > limits.per_sender:
            log.warning(
                "automatic replies to one sender capped (%d per %d s)",
                limits.per_sender,
                limits.window_seconds,
                extra={"conversation": inbound.conversation_key},
            )
            return False
        if await store.count(f"auto-reply:*:{window}", 1, limits.window_seconds) > limits.total:
            log.warning(
                "automatic replies capped for everyone (%d per %d s)", limits.total, limits.window_seconds
            )
            return False
        return True

    def _smalltalk_floor(self) -> float:
        """How sure small talk (and "status of my ticket") must be: the desk's setting, and never
        below the intent model's own out-of-scope threshold. A model with the sentence vector
        needs 0.74 on the sample, and reads short words ("cool", "passer") as small talk below it."""
        return max(self.answering.smalltalk_threshold, self.builtin.intent_threshold or 0.0)

    async def _smalltalk(self, state: ConversationState, turn: _Turn, intent: str, parse: Parse) -> Outcome:
        lang = turn.language
        if intent == "greet":
            return Outcome(state, [turn.reply(say("greet", lang, organisation=self.organisation))])
        if intent in ("goodbye", "thanks", "help", "out_of_scope"):
            return Outcome(state, [turn.reply(say(intent, lang))])
        if intent == "request_human":
            if not state.facts.get("last_request"):
                return Outcome(state, [turn.reply(say("describe_first", lang))])
            return await self._start_qualifying(state, turn, "qualify_start", "asked_human")
        if intent == "ticket_status":
            return await self._status(state, turn, parse)
        return Outcome(state, [turn.reply(say("ack", lang))])

    async def _link(self, state: ConversationState, turn: _Turn) -> Outcome | None:
        """ "link my channels" where the address is verified gives a code; the code typed on
        another channel makes that conversation the same person's."""
        lang = turn.language
        if match := _LINK_CODE.search(turn.inbound.text):
            if turn.inbound.text.strip() == match.group(0):  # a bare code says nothing of the language
                lang = turn.inbound.language or lang
                turn = _Turn(turn.inbound, lang)
            if minutes := await self.desk.guesses.wait(turn.inbound):  # not even looked up
                return Outcome(state, [turn.reply(say("too_many_guesses", lang, minutes=str(minutes)))])
            email = await self.desk.redeem(match.group(0).upper())
            if email is None:
                await self.desk.guesses.missed(turn.inbound)
                return Outcome(state, [turn.reply(say("link_invalid", lang))])
            facts = {**state.facts, "verified_email": email}
            return Outcome(
                dataclasses.replace(state, facts=facts), [turn.reply(say("linked", lang, email=email))]
            )
        if fold(turn.inbound.text).strip(" .!?") in _LINK_ASK:
            code = await self.desk.link_code(turn.inbound)
            if code is None:
                return Outcome(state, [turn.reply(say("link_unverified", lang))])
            return Outcome(state, [turn.reply(say("link_code", lang, code=code))])
        return None

    async def _status(self, state: ConversationState, turn: _Turn, parse: Parse) -> Outcome:
        replies = await self.desk.status(state, turn.inbound, turn.language, _ticket_number(parse))
        return Outcome(state, replies)

    def _matches(self, parse: Parse) -> tuple[KbMatch, ...]:
        return desk_articles(parse, self.builtin, self.answering)

    def _answer_from_kb(self, state: ConversationState, turn: _Turn, parse: Parse) -> Outcome:
        matches = parse.kb_matches
        self.metrics.confidence.labels(turn.inbound.channel).observe(matches[0].score if matches else 0.0)
        state = dataclasses.replace(state, facts={**state.facts, "last_request": turn.inbound.text})
        step, chosen = offer(matches, parse, self.builtin, self.answering, turn.language)
        if step == "answer":
            return self._article(state, turn, chosen[0].article_id, chosen[0].language)
        if step == "choose":
            return self._choose(state, turn, chosen)
        return self._offer_ticket(state, turn, "no_answer")

    def _article(self, state: ConversationState, turn: _Turn, article_id: str, language: str) -> Outcome:
        article = self.builtin.article(language, article_id)
        if article is None:  # the knowledge base changed since the choice was offered
            return self._offer_ticket(state, turn, "no_answer")
        suggested = [*state.facts.get("suggested", []), article.id][-20:]
        lang = turn.language
        choices = [Choice(say("helped_yes", lang), "helped:yes"), Choice(say("helped_no", lang), "helped:no")]
        state = dataclasses.replace(
            state, pending=_pending(choices), facts={**state.facts, "suggested": suggested}
        )
        return Outcome(
            state,
            [turn.reply(f"{article.title}\n\n{article.body}"), turn.reply(say("did_it_help", lang), choices)],
        )

    def _choose(self, state: ConversationState, turn: _Turn, matches: Sequence[KbMatch]) -> Outcome:
        lang = turn.language
        choices = [Choice(m.title, f"article:{m.language}:{m.article_id}") for m in matches]
        choices.append(Choice(say("none_of_these", lang), "none"))
        state = dataclasses.replace(state, pending=_pending(choices))
        return Outcome(state, [turn.reply(say("choose", lang), choices)])

    def _contact_noted(self, state: ConversationState, turn: _Turn, parse: Parse) -> Outcome:
        """An email address or a phone number alone: nothing to answer, but a ticket of this
        conversation will not ask for it again."""
        contact = dict(state.facts.get("contact") or {})
        for entity in parse.entities:
            if entity.entity in ("email", "phone"):
                contact[entity.entity] = entity.value
        state = dataclasses.replace(state, facts={**state.facts, "contact": contact})
        return Outcome(state, [turn.reply(say("contact_noted", turn.language))])

    def _offer_ticket(self, state: ConversationState, turn: _Turn, text_key: str) -> Outcome:
        lang = turn.language
        if text_key == "no_answer":
            self.metrics.unanswered.labels(turn.inbound.channel, lang).inc()
            # Kept for the manager's report (bot/stats.py), which takes it out of the state.
            state = dataclasses.replace(state, facts={**state.facts, UNANSWERED: turn.inbound.text})
        choices = [Choice(say("yes_open", lang), "ticket:yes"), Choice(say("no_thanks", lang), "ticket:no")]
        state = dataclasses.replace(
            state, pending=_pending(choices), facts={**state.facts, "offered_because": text_key}
        )
        return Outcome(state, [turn.reply(say(text_key, lang), choices)])

    async def _act(self, state: ConversationState, turn: _Turn, payload: str, parse: Parse) -> Outcome:
        lang = turn.language
        if payload.startswith("article:"):
            _, language, article_id = payload.split(":", 2)
            return self._article(state, turn, article_id, language)
        if payload == "none":
            return self._offer_ticket(state, turn, "offer_ticket")
        if payload == "ticket:yes":
            why = "no_answer" if state.facts.get("offered_because") == "no_answer" else "no_article_fit"
            return await self._start_qualifying(state, turn, "qualify_start", why)
        if payload == "helped:yes":
            # Solved at level 1: counted, and nothing reaches level 2.
            solved = int(state.facts.get("solved_at_level1", 0)) + 1
            facts = {**state.facts, "solved_at_level1": solved, "last_request": None}
            return Outcome(dataclasses.replace(state, facts=facts), [turn.reply(say("glad", lang))])
        if payload == "helped:no":
            return await self._start_qualifying(state, turn, "sorry_qualify", "not_helped")
        if payload.startswith("resolved:"):
            _, answer, number = payload.split(":", 2)
            return await self.desk.confirm_resolution(state, turn.inbound, lang, number, answer == "yes")
        if payload.startswith("slot:"):  # a choice of the qualification dialogue
            return await self._qualify(state, turn, parse, payload.split(":", 2)[2])
        return Outcome(state, [turn.reply(say("ack", lang))])

    # Qualifying ----------------------------------------------------------------------------
    async def _start_qualifying(
        self, state: ConversationState, turn: _Turn, intro: str, reason: str = "other"
    ) -> Outcome:
        """Begin the dialogue with what is already known: the request's own words, what the
        understanding found in them, and what the channel tells (a verified email)."""
        request = str(state.facts.get("last_request") or turn.inbound.text)
        parse = await self.engine.parse(request, turn.language)
        found = await assess_aside(request, parse, self.triage, turn.language)
        # Why level 1 hands it over: counted per reason (bot/metrics.py), told to level 2.
        draft: dict[str, Any] = {"description": request, "category": found.category, "reason": reason}
        for slot in ("impact", "urgency", "device", "since"):
            value = getattr(found, slot)
            if value:
                draft[slot] = value
        draft.update({k: v for k, v in found.contact.items() if v})
        for key, value in (state.facts.get("contact") or {}).items():  # given earlier, alone
            draft.setdefault(key, value)
        if turn.inbound.user_email:
            draft.setdefault("email", turn.inbound.user_email)
        state = dataclasses.replace(state, mode="qualifying", facts={**state.facts, "draft": draft})
        outcome = await self._next_question(state, turn, parse)
        return Outcome(
            outcome.state, [turn.reply(say(intro, turn.language)), *outcome.replies], outcome.effects
        )

    async def _qualify(
        self, state: ConversationState, turn: _Turn, parse: Parse, picked: str | None = None
    ) -> Outcome:
        draft = dict(state.facts.get("draft") or {})
        slot = str(state.pending.get("slot") or "") if state.pending.get("kind") == "slot" else ""
        if not slot:  # the pending choice of this slot was consumed by _picked
            slot = str(state.facts.get("asking") or "description")
        answer = parse_answer(slot, picked if picked is not None else turn.inbound.text, turn.language)
        if answer.kind == "cancel":
            facts = {**state.facts, "draft": {}, "asking": None}
            new_state = dataclasses.replace(state, mode="bot", pending={}, facts=facts)
            return Outcome(new_state, [turn.reply(say("qualify_cancelled", turn.language))])
        if answer.kind != "unclear":  # each question gets its own second chance
            state = dataclasses.replace(state, facts={**state.facts, "unclear": 0})
        if answer.kind == "value":
            _set(draft, slot, answer.value)
        elif answer.kind == "correct" and answer.slot:
            _set(draft, answer.slot, answer.value)
            # Said back, so the person sees the change was taken before the question comes again.
            state = dataclasses.replace(state, facts={**state.facts, "draft": draft})
            outcome = await self._next_question(state, turn, parse)
            noted = turn.reply(corrected(answer.slot, answer.value, turn.language))
            return Outcome(outcome.state, [noted, *outcome.replies], outcome.effects)
        elif answer.kind == "skip":
            draft["skipped"] = [*draft.get("skipped", []), slot]
        else:  # unclear: ask again once, then move on rather than trap the person
            unclear = int(state.facts.get("unclear", 0)) + 1
            if unclear >= 2:
                draft["skipped"] = [*draft.get("skipped", []), slot]
                unclear = 0
            state = dataclasses.replace(state, facts={**state.facts, "unclear": unclear})
        state = dataclasses.replace(state, facts={**state.facts, "draft": draft})
        return await self._next_question(state, turn, parse)

    async def _next_question(self, state: ConversationState, turn: _Turn, parse: Parse) -> Outcome:
        draft = dict(state.facts.get("draft") or {})
        skipped = set(draft.get("skipped", []))
        todo = [s for s in missing(draft, self.triage) if s not in skipped]
        if not todo:
            description = str(draft.get("description") or "")
            about = await self.engine.parse(description, turn.language) if description else parse
            facts = {**state.facts, "asking": None, "unclear": 0}
            return await self.desk.open_ticket(
                dataclasses.replace(state, facts=facts), turn.inbound, turn.language, draft, about
            )
        slot = todo[0]
        again = bool(state.facts.get("unclear")) and state.facts.get("asking") == slot
        text, options = question(slot, turn.language, draft, again=again)
        choices = [Choice(title, f"slot:{slot}:{value}") for title, value in options]
        pending: dict[str, Any] = {"kind": "slot", "slot": slot}
        if choices:
            pending = {**_pending(choices), "slot": slot}
        # The "skip / cancel" hint is given with the first question only.
        facts = {**state.facts, "asking": slot, "draft": {**draft, "_hinted": True}}
        new_state = dataclasses.replace(state, pending=pending, facts=facts)
        return Outcome(new_state, [turn.reply(text, choices)])

    # While level 2 holds the ticket --------------------------------------------------------------
    async def _with_level2(self, state: ConversationState, turn: _Turn, parse: Parse) -> Outcome:
        if _is_cancel(turn.inbound.text):
            return await self.desk.cancel(state, turn.inbound, turn.language)
        intent = parse.intent
        if (
            intent is not None
            and intent.name == "ticket_status"
            and intent.confidence >= self._smalltalk_floor()
        ) or _ticket_number(parse) is not None:
            return await self._status(state, turn, parse)
        return await self.desk.relay_to_level2(
            state, turn.inbound, turn.language, acknowledge=state.mode == "handed_off"
        )


def desk_articles(parse: Parse, builtin: BuiltinEngine, settings: AnsweringSettings) -> tuple[KbMatch, ...]:
    """The articles for what was understood (nlu.engine.understood_articles), with the desk's
    thresholds and never below the intent model's own out-of-scope threshold: on the sample
    desk's held-out paraphrases the right article comes at once for 87% of them instead of 37%
    from the words alone (bench/nlu.py, tests/test_answers.py)."""
    sure = sure_threshold(builtin, settings)
    matches = understood_articles(
        parse,
        builtin.answering,
        threshold=sure,
        margin=settings.intent_answer_margin,
        intents_of=functools.partial(_intents_of, builtin),
    )
    if parse.ranking:
        # An article that answers intents of the model is at most as likely as the likeliest of
        # them: the intent model, trained on the desk's many examples, knows these requests
        # better than the knowledge base's ranking ("impossible de présenter dans teams" is the
        # screen-sharing intent; the sound article's questions are nearer in words).
        confidence = {r.name: r.confidence for r in parse.ranking}
        capped = []
        for m in matches:
            intents = _intents_of(builtin, m)
            cap = max((confidence.get(i, 0.0) for i in intents), default=1.0)
            capped.append(dataclasses.replace(m, score=min(m.score, cap)) if m.score > cap else m)
        matches = tuple(sorted(capped, key=lambda m: -m.score))
    return matches


def offer(
    matches: Sequence[KbMatch],
    parse: Parse,
    builtin: BuiltinEngine,
    settings: AnsweringSettings,
    language: str,
) -> tuple[str, list[KbMatch]]:
    """What the chat does with the desk's matches (desk_articles): ("answer", [one]) as the
    ladder says; else ("choose", …) with the likely intents' articles first; else ("none", [])."""
    step, chosen = ladder(matches, settings)
    if step == "answer":
        if _one_word(parse.text):  # "teams" names what it is about, not what is wrong with it
            near = [m for m in matches if m.score >= settings.suggest_threshold]
            likely = probable_articles(parse, builtin, settings, language, even_if_sure=True)
            offered = {m.article_id: m for m in (*chosen, *likely, *near)}
            if len(offered) > 1:
                return "choose", list(offered.values())[: settings.max_suggestions]
        return step, chosen
    offered = {m.article_id: m for m in (*probable_articles(parse, builtin, settings, language), *chosen)}
    if offered:
        return "choose", list(offered.values())[: settings.max_suggestions]
    return "none", []


def _one_word(text: str) -> bool:
    return len([w for w in words(text) if w not in STOPWORDS]) == 1


def probable_articles(
    parse: Parse,
    builtin: BuiltinEngine,
    settings: AnsweringSettings,
    language: str,
    *,
    even_if_sure: bool = False,
) -> list[KbMatch]:
    """The articles of the intents that are likely but not sure enough to answer at once,
    most likely first: the words of "mon mdp marche pu" are closest to the VPN article;
    the intent model finds a forgotten or an expired password likely."""
    sure = parse.ranking and parse.ranking[0].confidence >= sure_threshold(builtin, settings)
    if sure and not even_if_sure:
        return []  # sure of one: its articles are answered or offered already (desk_articles)
    found: list[KbMatch] = []
    last = None  # the confidence of the last likely intent
    for intent in parse.ranking[:3]:
        # Likely: from the threshold, or as close behind a likely one as two intents the model
        # is torn between (0.52 and 0.49 are one doubt, not one answer and a stranger).
        if intent.confidence >= settings.intent_suggest_threshold or (
            last is not None and last - intent.confidence < settings.intent_answer_margin
        ):
            last = intent.confidence
            for article in builtin.answering(language, intent.name):
                found.append(KbMatch(article.id, article.language, article.title, intent.confidence))
    return found


def sure_threshold(builtin: BuiltinEngine, settings: AnsweringSettings) -> float:
    """From this confidence an intent is understood surely: the desk's setting, never below the
    intent model's own out-of-scope threshold."""
    return max(settings.intent_answer_threshold, builtin.intent_threshold or 0.0)


def _intents_of(builtin: BuiltinEngine, match: KbMatch) -> tuple[str, ...]:
    """The intents of the model that a match's article answers (none: the words alone judge it)."""
    article = builtin.article(match.language, match.article_id)
    known = builtin.intent_names
    return tuple(i for i in article.answers if i in known) if article is not None else ()


CHOICE_FLOOR = 0.02  # an article less likely than this is no choice worth a button


def ladder(matches: Sequence[KbMatch], settings: AnsweringSettings) -> tuple[str, list[KbMatch]]:
    """The knowledge base's step of the ladder, best match first (a match's score is the
    probability that it is the right article, nlu/kb_ranking.py): ("answer", [it]) when one
    article is that likely and clearly ahead of the next; ("choose", the likely ones) when a
    few are likely enough to be worth a click; ("none", []) when none is."""
    if (
        matches
        and matches[0].score >= settings.answer_threshold
        and (len(matches) == 1 or matches[0].score - matches[1].score >= settings.close_margin)
    ):
        return "answer", [matches[0]]
    if matches and matches[0].score >= settings.suggest_threshold:
        # Once the best is worth a click, so is anything not quite unlikely beside it: on the
        # development desks that finds the right article among the choices more often at no
        # cost to out-of-scope requests (bench/kb_fit.py).
        return "choose", [m for m in matches if m.score >= CHOICE_FLOOR][: settings.max_suggestions]
    return "none", []


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


def _ticket_number(parse: Parse) -> str | None:
    return next((e.value for e in parse.entities if e.entity == "ticket_number"), None)


def _set(draft: dict[str, Any], slot: str, value: Any) -> None:
    """Record an answer; a contact is an email or a phone number."""
    if slot == "contact":
        if isinstance(value, dict):
            draft.update({k: v for k, v in value.items() if v})
        elif "@" in str(value):
            draft["email"] = str(value)
        else:
            draft["phone"] = str(value)
    else:
        draft[slot] = value


_LINK_CODE = re.compile(r"\bLINK-\d{8}\b", re.IGNORECASE)
_LINK_ASK = frozenset(
    {
        "lier mes canaux",
        "lier mes comptes",
        "lier un canal",
        "link my channels",
        "link my accounts",
        "link a channel",
    }
)

_TICKET_ASK = frozenset(
    {
        "ticket",
        "un ticket",
        "ticket svp",
        "ticket stp",
        "ticket s'il vous plait",
        "ouvrir un ticket",
        "ouvrez un ticket",
        "ouvre un ticket",
        "je veux un ticket",
        "a ticket",
        "ticket please",
        "open a ticket",
        "open ticket",
        "create a ticket",
        "i want a ticket",
    }
)

_CANCEL = frozenset(
    {
        "annuler",
        "annule",
        "annuler mon ticket",
        "annulez mon ticket",
        "annule mon ticket",
        "annuler la demande",
        "cancel",
        "cancel my ticket",
        "cancel the ticket",
        "cancel my request",
    }
)


_RE_PREFIX = re.compile(r"^\s*((re|tr|fwd?|aw|sv)\s*:\s*)+", re.IGNORECASE)
# Refusals of bot/channels/email_message.py that mean our own mail came back: never relayed.
_OUR_OWN = ("X-Loop", "our own message")


_NUMBER_IN_TEXT = re.compile(r"\b[A-Z]{2,5}-\d{4}-\d{4,8}\b")


def _asks_status(text: str) -> bool:
    """A short mail whose own words (not the subject) quote a ticket number: "where is it?"."""
    return _NUMBER_IN_TEXT.search(text) is not None and len(text.split()) <= 12


# An article's line telling a chat to reply "ticket": by mail the ticket is already open, and
# the footer says how to add to it.
_REPLY_TICKET = re.compile(r"répondez « ticket »|reply \"ticket\"|reply 'ticket'", re.IGNORECASE)


def for_mail(body: str) -> str:
    """An article's text for an automatic reply by mail: without the chat's "reply ticket"."""
    return "\n".join(line for line in body.splitlines() if not _REPLY_TICKET.search(line)).strip()


def _excerpt(body: str, limit: int = 300) -> str:
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def _one_mail(replies: list[Outbound]) -> list[Outbound]:
    """A turn's replies as one mail per sender: nobody wants three emails for one answer."""
    if len(replies) <= 1:
        return replies
    merged: list[Outbound] = []
    for reply in replies:
        if merged and merged[-1].sender == reply.sender:
            last = merged[-1]
            merged[-1] = dataclasses.replace(
                last, text=f"{last.as_text()}\n\n{reply.text}", choices=reply.choices, id=last.id
            )
        else:
            merged.append(reply)
    return merged


def _is_cancel(text: str) -> bool:
    return fold(text).strip(" .!") in _CANCEL


def _pending(choices: Sequence[Choice]) -> dict[str, Any]:
    return {"kind": "choice", "options": [{"title": c.title, "payload": c.payload} for c in choices]}


_YES = frozenset(
    {"oui", "yes", "ok", "okay", "d'accord", "daccord", "ouais", "yep", "y", "o", "volontiers", "sure"}
)
_NO = frozenset({"non", "no", "nope", "n", "pas besoin", "non merci", "no thanks"})
# A yes or a no typed with a courtesy or a reason ("oui merci", "non, toujours pareil"): the
# first words decide, in a short answer; "oui mais…" decides nothing.
_YES_START = re.compile(
    r"^(?:oui|ouais|yes|yep|yeah|ok|okay|d'accord|daccord|volontiers|sure|of course|bien sur|"
    r"avec plaisir|please|s'il vous plait|svp|stp)\b"
)
_NO_START = re.compile(r"^(?:non|nope|no|nan|pas besoin|pas la peine|no need|not now|pas maintenant)\b")
# What a solved problem sounds like, in a chat answer or a mail reply.
_SOLVED_WORDS = (
    r"c'est bon|c'est regle|c'est resolu|ca (?:a )?(?:re)?(?:marche|fonctionne)|tout (?:est bon|marche|fonctionne)|"
    r"regle|resolu|resolved|it works|it worked|that worked|works now|(?:all )?(?:solved|fixed|sorted)|"
    r"problem solved|probleme (?:regle|resolu)|tout est rentre dans l'ordre"
)
# To "did this help?" / "is it solved?" a thanks starts a yes too (not in a mail: see below).
_SOUNDS_SOLVED = re.compile(
    rf"^(?:merci|thanks|thank you|thx|parfait|super|genial|top|nickel|impeccable|great|perfect|awesome|"
    rf"{_SOLVED_WORDS})\b"
)
# ... and an unsolved one, wherever it stands in a short answer.
_UNSOLVED = re.compile(
    r"(?:toujours pas|toujours pareil|toujours le meme|ne marche (?:toujours )?pas|"
    r"ne fonctionne (?:toujours )?pas|marche (?:toujours )?pas|fonctionne (?:toujours )?pas|"
    r"pas (?:regle|resolu|mieux)|rien n'a change|ca n'a (?:pas|rien) (?:marche|change|aide)|"
    r"still (?:not|broken|the same|doesn't|does not|failing)|doesn't work|does not work|didn't (?:help|work)|"
    r"did not (?:help|work)|not (?:solved|fixed|working)|same problem|no luck|no change|"
    r"^pas vraiment|^not really|^bof)"
)
_BUT = re.compile(r"\b(?:mais|but|sauf|except|however|cependant)\b")


_GREETING = re.compile(r"^(?:bonjour|bonsoir|salut|hello|hi|hey|dear|cher|chere)\b[^.!?]{0,40}[,!]?$")
_SAYS_SOLVED = re.compile(rf"\b(?:{_SOLVED_WORDS})\b")


def mail_says_solved(text: str) -> bool:
    """A mail reply that says its problem is solved, as the automatic reply asks ("répondez
    « résolu »"): "Bonjour, c'est résolu, merci ! Ana". Only a short one: a mail that goes on,
    or says "but", goes to level 2."""
    lines = [fold(line).strip(" .!,") for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not _GREETING.match(line)]
    if not lines or any(len(line.split()) > 3 for line in lines[1:]):  # a name, "bonne journée"
        return False
    first = lines[0]
    return (
        len(first.split()) <= 8
        and not _BUT.search(first)
        and not _UNSOLVED.search(first)
        and _SAYS_SOLVED.search(first) is not None
    )


def typed_yes_no(folded: str, about: str) -> bool | None:
    """A yes or a no typed to a yes/no question, from folded text; None when it is neither.
    `about` is "ticket" (open one?) or "solved" (did it help? is it solved?): only there does
    "toujours pareil" mean no and "merci, ça marche" yes."""
    text = folded.strip(" .!?,;")
    if text in _YES:
        return True
    if text in _NO:
        return False
    if len(text.split()) > 6 or _BUT.search(text):  # longer: more likely a new request
        return None
    if about == "solved" and _UNSOLVED.search(text):
        return False
    if _NO_START.match(text):
        return False
    if _YES_START.match(text) or (about == "solved" and _SOUNDS_SOLVED.match(text)):
        return True
    return None


# Typed answers to a choice list of articles that mean its last button, "none of these".
_NONE = _NO | frozenset(
    {
        "aucune",
        "aucun",
        "aucune des deux",
        "ni l'une ni l'autre",
        "rien de tout ca",
        "none",
        "neither",
        "none of them",
        "nothing fits",
        "aucune ne correspond",
        "aucune ne va",
    }
)


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
    if "none" in payloads and text in _NONE:
        return "none"
    for yes, no, about in (("ticket:yes", "ticket:no", "ticket"), ("helped:yes", "helped:no", "solved")):
        if yes in payloads:
            answer = typed_yes_no(text, about)
            if answer is not None:
                return yes if answer else no
    resolved = [p for p in payloads if p.startswith("resolved:")]
    if resolved:
        answer = typed_yes_no(text, "solved")
        if answer is not None:
            return resolved[0] if answer else resolved[-1]
    return None
