"""The Rasa-compatible REST channel, spoken to over real HTTP as a Rasa front end would."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.app import Guichet


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
    (reply,) = replies
    assert reply["recipient_id"] == "alice"
    article = guichet.engine.article("fr", "password-reset")
    assert article is not None
    assert reply["text"] == f"{article.title}\n\n{article.body}"


async def test_an_english_question_is_answered_in_english(guichet: Guichet) -> None:
    status, replies = await post(guichet, {"sender": "bob", "message": "my vpn wont connect"})
    assert status == 200
    (reply,) = replies
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
    _, (opened,) = await post(guichet, {"sender": "carol", "message": "ticket:yes"})
    assert "HD-20" in opened["text"]
    # The same conversation remembers the number for a status question.
    _, (status,) = await post(guichet, {"sender": "carol", "message": "où en est mon ticket ?"})
    number = opened["text"].split("number ")[1].split(".")[0]
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
