"""The manager's figures: the /stats page after real conversations, and `guichet report
unanswered` turning the questions nobody could answer into draft articles `guichet check`
accepts."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp

from bot.app import Guichet
from bot.messages import utcnow
from bot.report_cli import draft
from bot.stats import FRT_BUCKETS, group_questions, percentile_bucket
from bot.store.base import Question
from nlu.kb import load_articles
from tests.conftest import SAMPLE_CONFIG
from tests.level2 import open_ticket_over_rest, say_over_rest
from tests.processes import ROOT

UNANSWERED_FR = [
    "le chat du voisin miaule trop fort",
    "le chat de mon voisin miaule fort",
    "le chat du voisin miaule très fort",
    "la cantine sert des frites froides <script>x</script>",
]
UNANSWERED_EN = ["the canteen fries are cold", "the canteen serves cold fries"]


async def test_the_stats_page_shows_the_desk_at_a_glance(guichet: Guichet, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        await say_over_rest(http, guichet.url, "ana", "j'ai oublié mon mot de passe")
        await say_over_rest(http, guichet.url, "ana", "helped:yes")
        for n, question in enumerate(UNANSWERED_FR + UNANSWERED_EN):
            replies = await say_over_rest(http, guichet.url, f"p{n}", question)
            assert replies[-1]["buttons"][0]["payload"] == "ticket:yes", (question, replies)
    number = await open_ticket_over_rest(guichet.url, "carla", "mon badge n'ouvre plus la porte du parking")
    assert number.startswith("HD-")

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{guichet.url}/stats") as answer:
            assert answer.status == 401 and "guichet stats" in await answer.text()
        async with http.get(f"{guichet.url}/stats?token=wrong") as answer:
            assert answer.status == 401
        async with http.get(f"{guichet.url}/stats?token={guichet.admin.token}") as answer:
            assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
            body = await answer.text()
    # 2 (ana) + 6 questions + carla's conversation (≥ 3 messages): all today, on the REST channel.
    days = await guichet.stats.days(1)
    (today,) = days
    assert today.messages["rest"] >= 11 and today.solved == 1 and today.handed_off == 1
    assert today.unanswered >= 7  # the six above and carla's first message
    assert sum(today.hours) == today.total and sum(today.frt) == 8  # 8 people got a first reply
    assert f"<b>{today.total}</b>messages" in body
    assert "<b>50%</b>résolu au niveau 1" in body  # 1 solved, 1 handed off
    # the top unanswered questions, close paraphrases together (as `guichet report unanswered`)
    assert re.search(r"<td>le chat d[^<]* voisin miaule[^<]*</td><td>3</td>", body), body
    assert re.search(r"<td>the canteen [^<]*</td><td>2</td>", body), body
    assert "<script>" not in body and "&lt;script&gt;" in body  # a question is text, never markup
    ((queue, priority),) = today.handoffs  # the ticket's queue and priority, in the table
    ticket = await guichet.store.ticket(number)
    assert ticket is not None and (queue, priority) == (ticket.queue, ticket.priority)
    assert f"<td>{queue}</td>" in body


def test_first_response_percentiles_come_from_buckets() -> None:
    frt = [0] * len(FRT_BUCKETS)
    frt[0], frt[2], frt[6] = 6, 3, 1  # ≤ 1 s, ≤ 5 s, ≤ 5 min
    assert percentile_bucket(frt, 0.5) == "≤ 1 s"
    assert percentile_bucket(frt, 0.9) == "≤ 5 s"
    assert percentile_bucket(frt, 1.0) == "≤ 5 min"
    assert percentile_bucket([0] * len(FRT_BUCKETS), 0.5) == "—"


def test_unanswered_questions_are_grouped_and_drafted_as_valid_articles(tmp_path: Path) -> None:
    now = utcnow()
    questions = [Question(now, "fr", "webchat", q) for q in UNANSWERED_FR] + [
        Question(now, "en", "email", q) for q in UNANSWERED_EN
    ]
    groups = group_questions(questions)
    biggest = groups[0]
    assert biggest.language == "fr" and biggest.size == 3  # the three paraphrases about the cat
    assert not any("cantine" in q for q in biggest.questions)
    english = next(g for g in groups if g.language == "en")
    assert english.size == 2
    for group in (biggest, english):
        name, text = draft(group)
        folder = tmp_path / "kb" / group.language
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    articles, problems = load_articles(tmp_path / "kb")
    assert problems == [] and len(articles) == 2
    french = next(a for a in articles if a.language == "fr")
    assert french.id.startswith("draft-") and "À COMPLÉTER" in french.body
    assert set(french.questions) == set(UNANSWERED_FR[:3])


async def test_guichet_report_unanswered_reads_the_running_process(guichet: Guichet, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for n, question in enumerate(UNANSWERED_FR[:3] * 2):
            await say_over_rest(http, guichet.url, f"r{n}", question)
    await guichet.manager.idle()
    assert len(await guichet.store.unanswered(utcnow() - timedelta(days=1))) == 6
    data_dir = Path(guichet.settings.store.path)
    out = tmp_path / "drafts"
    # The store is held by the running process: the command asks it over its admin API.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "report", "unanswered", "--config", str(SAMPLE_CONFIG), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "GUICHET_DATA_DIR": str(data_dir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "6 unanswered questions" in result.stdout and "6 × [fr]" in result.stdout
    (written,) = list((out / "fr").glob("draft-*.md"))
    assert "demandé 6 fois" in written.read_text(encoding="utf-8")
    link = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "stats", "--config", str(SAMPLE_CONFIG)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "GUICHET_DATA_DIR": str(data_dir)},
    )  # fmt: skip
    assert link.stdout.strip() == f"{guichet.url}/stats?token={guichet.admin.token}"
