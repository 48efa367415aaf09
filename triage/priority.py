"""Priority P1–P4: the impact × urgency matrix (ITIL), then the configured rules that raise it.
The reasons travel to level 2, so a technician sees why a ticket is P1."""

from __future__ import annotations

from nlu.text import fold
from triage.config import PRIORITIES, TriageSettings


def priority(
    impact: str | None,
    urgency: str | None,
    settings: TriageSettings,
    *,
    category: str,
    requester_email: str | None,
    text: str,
    security: bool,
) -> tuple[str, list[str]]:
    impact = impact or settings.default_impact
    urgency = urgency or settings.default_urgency
    level = settings.matrix[impact][urgency]
    reasons = [f"matrix {impact} × {urgency} = {level}"]
    folded = fold(text)
    vips = {v.lower() for v in settings.vip_requesters}
    for rule in settings.rules:
        if rule.vip and not (requester_email and requester_email.lower() in vips):
            continue
        if rule.impact is not None and rule.impact != impact:
            continue
        if rule.urgency is not None and rule.urgency != urgency:
            continue
        if (
            rule.categories
            and category not in rule.categories
            and not (security and "security" in rule.categories)
        ):
            continue
        if rule.keywords and not any(fold(k) in folded for k in rule.keywords):
            continue
        raised = level
        if rule.raise_to is not None and PRIORITIES.index(rule.raise_to) < PRIORITIES.index(raised):
            raised = rule.raise_to
        if rule.raise_by:
            raised = PRIORITIES[max(0, PRIORITIES.index(raised) - rule.raise_by)]
        if raised != level:
            reasons.append(f"rule {rule.name!r}: {level} → {raised}")
            level = raised
    return level, reasons
