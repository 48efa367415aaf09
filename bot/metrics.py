"""What a help-desk manager and an operator count, as Prometheus metrics at `GET /metrics`.

One registry per Guichet instance (tests run several in one process). With several processes
on Redis, Prometheus scrapes each and sums: every metric here is a counter or a histogram,
never a gauge of shared state, so the sums are right. Labels are channels, queues,
priorities and languages — never a person, a text or a ticket number.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from bot.messages import utcnow

# Seconds: a chat answers in milliseconds, a person types in tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inbound = Counter(
            "guichet_inbound_messages", "Messages people sent, per channel", ["channel"], registry=r
        )
        self.replies = Counter(
            "guichet_replies", "Messages sent to people, per channel and sender (bot or agent)",
            ["channel", "sender"], registry=r,
        )  # fmt: skip
        self.reply_seconds = Histogram(
            "guichet_reply_seconds", "From a person's message to the bot's reply being committed",
            ["channel"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.first_response_seconds = Histogram(
            "guichet_first_response_seconds", "From a conversation's first message to its first reply",
            ["channel"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.handoffs = Counter(
            "guichet_handoffs",
            "Tickets handed to level 2, per reason: no_answer, no_article_fit, not_helped, asked_human, email",
            ["channel", "queue", "priority", "reason"],
            registry=r,
        )
        self.solved_level1 = Counter(
            "guichet_solved_at_level1", "Requests the knowledge base solved (the person said so)",
            ["channel"], registry=r,
        )  # fmt: skip
        self.unanswered = Counter(
            "guichet_unanswered_questions",
            "Questions no article answered",
            ["channel", "language"],
            registry=r,
        )
        self.confidence = Histogram(
            "guichet_answer_confidence", "Best knowledge-base score of each question the bot answered or not",
            ["channel"], buckets=SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.outbox_lag = Histogram(
            "guichet_outbox_lag_seconds", "From a reply or handoff being committed to its delivery",
            ["destination"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            "guichet_dead_letters", "Deliveries given up after the last retry", ["destination"], registry=r
        )
        self.sla_breaches = Counter(
            "guichet_sla_breaches",
            "Tickets answered (first_response) or resolved (resolution) after their SLA deadline",
            ["kind", "priority"], registry=r,
        )  # fmt: skip
        self.abandoned = Counter(
            "guichet_abandoned_conversations",
            "Conversations the person left while the bot waited (a choice or a qualification question)",
            ["channel", "stage"], registry=r,
        )  # fmt: skip

    def delivered(self, destination: str, created_at: str | None) -> None:
        if created_at:
            try:
                lag = (utcnow() - datetime.fromisoformat(created_at)).total_seconds()
            except ValueError:
                return
            self.outbox_lag.labels(_kind(destination)).observe(max(lag, 0.0))

    def serve(self, http: web.Application) -> None:
        http.router.add_get("/metrics", self._metrics)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _kind(destination: str) -> str:
    """channel:webchat → webchat; webhook:support → webhook:support (a queue is not personal)."""
    return destination.removeprefix("channel:")
