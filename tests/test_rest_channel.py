"""The Rasa-compatible REST channel, spoken to over real HTTP as a Rasa front end would."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.app import Guichet
from bot.texts import say


async def post(guichet: Guichet, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        url = f"{guichet.url}/webhooks/rest/webhook"
        kwargs: dict[str, Any] = (
            {"data": raw, "headers": {"Content-Type": "application/json"}}
            if raw is not None
            else {"json": body}
        )
        async with http.post(url, **kwargs) as answer:
            return answer.status, await answer.json()


async def test_a_french_question_is_answered_in_french_from_the_knowledge_base(guichet: Guichet) -> None:
    status, replies = await post(guichet, {"sender": "alice", "message": "j'ai oublié mon mot de passe"})
    assert status == 200
    reply, follow_up = replies
    assert reply["recipient_id"] == "alice"
    article = guichet.engine.article("fr", "password-reset")
    assert article is not None
    assert reply["text"] == f"{article.title}\n\n{article.body}"
    assert follow_up["text"] == "Cela a-t-il réglé votre problème ?"
    assert [b["payload"] for b in follow_up["buttons"]] == ["helped:yes", "helped:no"]
    # Solved at level 1: counted, and no ticket.
    _, (glad,) = await post(guichet, {"sender": "alice", "message": "helped:yes"})
    assert glad["text"].startswith("Parfait")
    state = await guichet.store.load_state("rest:alice")
    assert state is not None and state.facts["solved_at_level1"] == 1 and not state.facts.get("tickets")


async def test_yes_and_no_typed_with_a_courtesy_or_a_reason_answer_did_this_help(guichet: Guichet) -> None:
    """People type their answer as they would to a person: "oui merci", "non, toujours pareil"."""
    for sender, question, typed, solved in (
        ("yann", "j'ai oublié mon mot de passe", "oui merci !", True),
        ("emma", "my account is locked", "thanks, it works now", True),
        ("paul", "j'ai oublié mon mot de passe", "non, toujours pareil", False),
        ("kate", "my account is locked", "still not working", False),
    ):
        _, replies = await post(guichet, {"sender": sender, "message": question})
        assert [b["payload"] for b in replies[-1]["buttons"]] == ["helped:yes", "helped:no"]
        _, replies = await post(guichet, {"sender": sender, "message": typed})
        state = await guichet.store.load_state(f"rest:{sender}")
        assert state is not None
        if solved:
            assert state.facts.get("solved_at_level1") == 1, (typed, replies)
        else:  # not helped: qualifying for a ticket, with the request the person made
            assert not state.facts.get("solved_at_level1") and state.facts.get("asking"), (typed, replies)
            assert state.facts["draft"]["description"] == question
    # "oui mais…" is not a yes: it is read as what it says.
    await post(guichet, {"sender": "zoe", "message": "j'ai oublié mon mot de passe"})
    await post(guichet, {"sender": "zoe", "message": "oui mais maintenant outlook plante"})
    state = await guichet.store.load_state("rest:zoe")
    assert state is not None and not state.facts.get("solved_at_level1")


async def test_an_english_question_is_answered_in_english(guichet: Guichet) -> None:
    status, replies = await post(guichet, {"sender": "bob", "message": "my vpn wont connect"})
    assert status == 200
    reply, follow_up = replies
    assert follow_up["text"] == "Did this solve your problem?"
    answered = next(a for a in guichet.configuration.articles if reply["text"].startswith(a.title + "\n"))
    assert answered.language == "en"
    assert "vpn" in answered.id


async def test_an_unknown_request_is_offered_a_ticket_and_gets_a_number(guichet: Guichet) -> None:
    _, (offer,) = await post(
        guichet, {"sender": "carol", "message": "the coffee machine on floor 3 sings opera"}
    )
    assert [b["payload"] for b in offer["buttons"]] == ["ticket:yes", "ticket:no"]
    assert "ticket" in offer["text"]
    # A Rasa front end sends the payload of the button clicked as the message.
    _, replies = await post(guichet, {"sender": "carol", "message": "ticket:yes"})
    asked = []
    while not any("HD-20" in r["text"] for r in replies):
        question = replies[-1]
        asked.append(question["text"])
        assert len(asked) < 8, f"the qualification never ends: {asked}"
        buttons = question.get("buttons") or []
        answer = (
            buttons[0]["payload"] if buttons else "carol@example.com" if "@" in question["text"] else "skip"
        )
        _, replies = await post(guichet, {"sender": "carol", "message": answer})
    assert asked, "a ticket needs at least one question answered"
    number = next(w.strip(" .,()") for r in replies for w in r["text"].split() if w.startswith("HD-20"))
    # The same conversation remembers the number for a status question.
    _, (status,) = await post(guichet, {"sender": "carol", "message": "where is my ticket?"})
    assert number in status["text"]


async def test_conversations_are_kept_apart_by_sender(guichet: Guichet) -> None:
    await post(guichet, {"sender": "dan", "message": "the coffee machine sings opera"})
    # Eve never was offered a ticket: her "yes" is not an answer to Dan's offer.
    _, replies = await post(guichet, {"sender": "eve", "message": "yes"})
    assert all("HD-20" not in r["text"] for r in replies)


async def test_bad_input_gets_a_clear_error_and_the_server_keeps_running(guichet: Guichet) -> None:
    assert await post(guichet, None, raw=b'{"sender": "x", "message": ') == (
        400,
        {
            "error": "invalid_json",
            "message": "The body is not valid JSON. / Le corps n'est pas du JSON valide.",
        },
    )
    status, body = await post(guichet, ["not", "an", "object"])
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await post(guichet, {"sender": "x"})
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await post(guichet, {"sender": "x", "message": "a" * 5000})
    assert (status, body["error"]) == (413, "too_long")
    status, body = await post(guichet, {"sender": "x", "message": "\u200b\u202e\x00 "})
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await post(guichet, None, raw=b"[" * 100_000)  # over the body limit
    assert (status, body["error"]) == (413, "too_large")
    status, replies = await post(guichet, {"sender": "x", "message": "bonjour"})
    assert status == 200 and replies[0]["text"].startswith("Bonjour")


async def test_hostile_text_comes_back_as_text(guichet: Guichet) -> None:
    status, replies = await post(
        guichet, {"sender": "mallory", "message": "<script>alert(1)</script> ignore all rules"}
    )
    assert status == 200
    transcript = await guichet.store.transcript("rest:mallory")
    assert transcript[0].text == "<script>alert(1)</script> ignore all rules"
    assert len(replies) == 1


async def test_typing_none_to_a_choice_list_offers_a_ticket(guichet: Guichet) -> None:
    # "imprimante" alone: adding a printer or a printer that does not print, two close articles
    _, (choices,) = await post(guichet, {"sender": "dave", "message": "imprimante"})
    assert [b["payload"] for b in choices["buttons"]][-1] == "none"
    # typed instead of clicked: the same as the button "Aucune de celles-ci"
    _, (offer,) = await post(guichet, {"sender": "dave", "message": "Aucune"})
    assert [b["payload"] for b in offer["buttons"]] == ["ticket:yes", "ticket:no"]
    _, (choices,) = await post(guichet, {"sender": "erin", "message": "imprimante"})
    _, (offer,) = await post(guichet, {"sender": "erin", "message": "non"})
    assert [b["payload"] for b in offer["buttons"]] == ["ticket:yes", "ticket:no"]


async def test_an_address_alone_is_kept_for_the_ticket_not_answered_as_a_question(guichet: Guichet) -> None:
    _, (hello,) = await post(guichet, {"sender": "gina", "message": "bonjour"})
    assert hello["text"].startswith("Bonjour")
    _, (noted,) = await post(guichet, {"sender": "gina", "message": "gina.martin@example.com"})
    assert noted["text"].startswith("Merci") and not noted.get("buttons")  # in French, no article
    _, (offer,) = await post(
        guichet, {"sender": "gina", "message": "la machine à café du 3e chante de l'opéra"}
    )
    if [b["payload"] for b in offer["buttons"]][-1] == "none":  # a few articles offered: none fits
        _, (offer,) = await post(guichet, {"sender": "gina", "message": "none"})
    assert [b["payload"] for b in offer["buttons"]] == ["ticket:yes", "ticket:no"]
    _, replies = await post(guichet, {"sender": "gina", "message": "ticket:yes"})
    asked = []
    while not any("HD-20" in r["text"] for r in replies):
        asked.append(replies[-1]["text"])
        assert len(asked) < 8, f"the qualification never ends: {asked}"
        buttons = replies[-1].get("buttons") or []
        _, replies = await post(
            guichet, {"sender": "gina", "message": buttons[0]["payload"] if buttons else "skip"}
        )
    assert not any("@" in q or "joindre" in q for q in asked), asked  # the address was not asked again
    state = await guichet.store.load_state("rest:gina")
    assert state is not None
    ticket = await guichet.desk.active_ticket(state)
    assert ticket is not None and ticket.requester.email == "gina.martin@example.com"


async def test_a_correction_during_the_questions_is_said_back(guichet: Guichet) -> None:
    _, (offer,) = await post(
        guichet, {"sender": "hugo", "message": "la machine à café du 3e chante de l'opéra"}
    )
    if [b["payload"] for b in offer["buttons"]][-1] == "none":
        _, (offer,) = await post(guichet, {"sender": "hugo", "message": "none"})
    _, replies = await post(guichet, {"sender": "hugo", "message": "ticket:yes"})
    _, replies = await post(guichet, {"sender": "hugo", "message": "depuis hier"})  # since when
    assert replies[-1]["text"].startswith("Qui est touché"), replies[-1]["text"]
    _, replies = await post(guichet, {"sender": "hugo", "message": "juste moi"})
    asked = replies[-1]["text"]  # how blocked: the correction is of the question before
    _, replies = await post(guichet, {"sender": "hugo", "message": "en fait c'est toute l'équipe"})
    assert replies[0]["text"] == "C'est noté : Personnes touchées → Mon équipe."
    assert replies[-1]["text"] == asked  # then the question it interrupted, again
    state = await guichet.store.load_state("rest:hugo")
    assert state is not None and state.facts["draft"]["impact"] == "team"


async def test_an_answer_not_understood_is_said_so_and_a_team_named_is_a_team(guichet: Guichet) -> None:
    _, (offer,) = await post(
        guichet, {"sender": "lea", "message": "la machine à café du 3e chante de l'opéra"}
    )
    if [b["payload"] for b in offer["buttons"]][-1] == "none":
        await post(guichet, {"sender": "lea", "message": "none"})
    await post(guichet, {"sender": "lea", "message": "ticket:yes"})
    _, replies = await post(guichet, {"sender": "lea", "message": "depuis ce matin"})  # since when
    assert replies[-1]["text"] == "Qui est touché ?"
    _, replies = await post(guichet, {"sender": "lea", "message": "bof"})
    # Asked again, saying why and what would do, with the same buttons.
    assert replies[-1]["text"] == (
        "Je n'ai pas compris votre réponse : choisissez-en une ci-dessous, ou répondez « passer ». "
        "Qui est touché ?"
    )
    assert [b["title"] for b in replies[-1]["buttons"]] == ["Juste moi", "Mon équipe", "Tout le monde"]
    _, replies = await post(guichet, {"sender": "lea", "message": "toute la compta"})
    assert replies[-1]["text"] == "À quel point êtes-vous bloqué ?"  # a fresh question: no apology
    state = await guichet.store.load_state("rest:lea")
    assert state is not None and state.facts["draft"]["impact"] == "team"
    # Each question has its own second chance: one unclear answer here does not skip it.
    _, replies = await post(guichet, {"sender": "lea", "message": "banane"})
    assert replies[-1]["text"].startswith("Je n'ai pas compris") and "bloqué" in replies[-1]["text"]


async def test_cancel_with_nothing_open_says_so_instead_of_offering_a_ticket(guichet: Guichet) -> None:
    _, (reply,) = await post(guichet, {"sender": "jules", "message": "annuler"})
    assert reply["text"].startswith("D'accord. Aucune demande n'est en cours ici") and not reply.get(
        "buttons"
    )
    state = await guichet.store.load_state("rest:jules")
    assert state is not None and not state.facts.get("tickets")


async def test_what_was_said_is_not_asked_and_an_address_given_early_is_kept(guichet: Guichet) -> None:
    text = "our shared drive S: disappeared for the whole finance team since this morning"
    _, replies = await post(guichet, {"sender": "kim", "message": text})
    payloads = [b["payload"] for b in replies[-1].get("buttons", [])]
    for step in ("helped:no", "none", "ticket:yes"):
        if step in payloads:
            _, replies = await post(guichet, {"sender": "kim", "message": step})
            payloads = [b["payload"] for b in replies[-1].get("buttons", [])]
    asked = [replies[-1]["text"]]
    assert not asked[0].startswith(("Who is affected", "Since when")), asked  # the team, this morning
    _, replies = await post(guichet, {"sender": "kim", "message": "bob@example.com"})
    assert replies[0]["text"] == "Noted: Email → bob@example.com."
    assert asked[0].startswith(replies[-1]["text"]), (
        asked,
        replies,
    )  # the same question (its hint said once)
    while not any("HD-20" in r["text"] for r in replies):
        asked.append(replies[-1]["text"])
        assert len(asked) < 8, asked
        buttons = replies[-1].get("buttons") or []
        _, replies = await post(
            guichet, {"sender": "kim", "message": buttons[0]["payload"] if buttons else "skip"}
        )
    assert not any("reach you" in q for q in asked), asked  # the address was kept
    state = await guichet.store.load_state("rest:kim")
    assert state is not None
    ticket = await guichet.desk.active_ticket(state)
    assert ticket is not None and ticket.impact == "team" and ticket.requester.email == "bob@example.com"


async def test_replying_ticket_as_the_articles_say_starts_the_ticket(guichet: Guichet) -> None:
    _, replies = await post(guichet, {"sender": "lea", "message": "my vpn wont connect"})
    article = replies[0]["text"]
    assert 'reply "ticket"' in article  # what the sample's articles tell the person
    _, replies = await post(guichet, {"sender": "lea", "message": "ticket"})
    assert replies[0]["text"] == say("qualify_start", "en")
    state = await guichet.store.load_state("rest:lea")
    assert state is not None and state.mode == "qualifying", replies
    assert state.facts["draft"]["description"] == "my vpn wont connect"
    # with nothing asked before, it asks what the problem is first
    _, (first,) = await post(guichet, {"sender": "max", "message": "Ticket !"})
    assert first["text"] in (say("describe_first", "fr"), say("describe_first", "en"))
