"""Which level-2 queue gets a ticket: the first route whose conditions all hold, else the default."""

from __future__ import annotations

from handoff.config import HandoffSettings


def route(
    settings: HandoffSettings, *, category: str, priority: str, language: str, in_business_hours: bool
) -> str | None:
    """The queue's name, or None when no queue is configured (tickets then stay in the store)."""
    for rule in settings.routes:
        if rule.categories and category not in rule.categories:
            continue
        if rule.priorities and priority not in rule.priorities:
            continue
        if rule.languages and language not in rule.languages:
            continue
        if rule.business_hours is not None and rule.business_hours != in_business_hours:
            continue
        return rule.queue
    return settings.default_queue
