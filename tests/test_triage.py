"""The pure triage rules: priority matrix and rules, SLA clocks, the dialogue's answers,
recurring problems and duplicates, and the settings' own checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from nlu.text import fold
from triage.assess import IMPACT_PHRASES, URGENCY_PHRASES, first_level
from triage.config import TriageSettings
from triage.priority import priority
from triage.recurring import PastTicket, relate
from triage.sla import business_minutes_between, deadlines, in_business_hours
from triage.slots import corrected, missing, parse_answer, question, summary

PARIS = ZoneInfo("Europe/Paris")
SETTINGS = TriageSettings()


def rate(impact: str | None, urgency: str | None, **kw: object) -> tuple[str, list[str]]:
    options: dict[str, object] = {
        "category": "network",
        "requester_email": None,
        "text": "",
        "security": False,
    }
    options.update(kw)
    return priority(impact, urgency, SETTINGS, **options)  # type: ignore[arg-type]


def test_the_matrix_then_the_rules_that_raise_it() -> None:
    assert rate("individual", "low")[0] == "P4"
    assert rate(None, None)[0] == "P4"  # unknown: individual × medium
    assert rate("team", "high")[0] == "P2"
    level, reasons = rate("organisation", "high")
    assert level == "P1" and reasons[0] == "matrix organisation × high = P1"
    level, reasons = rate("individual", "low", category="security", security=True)
    assert level == "P2" and "security incident" in reasons[-1]
    vip = TriageSettings(vip_requesters=("ceo@example.com",))
    level, reasons = priority(
        "individual",
        "medium",
        vip,
        category="email",
        requester_email="CEO@example.com",
        text="",
        security=False,
    )
    assert level == "P3" and "VIP" in reasons[-1]


def test_sla_counts_business_hours_only_where_the_priority_says_so() -> None:
    friday_late = datetime(2026, 11, 20, 17, 50, tzinfo=PARIS)  # a Friday, 10 minutes before closing
    first, resolution = deadlines(friday_late, "P2", SETTINGS)  # 1 h, 8 business hours
    assert first == datetime(2026, 11, 23, 8, 50, tzinfo=PARIS)  # Monday, 50 minutes after opening
    assert resolution == datetime(2026, 11, 23, 15, 50, tzinfo=PARIS)  # 10 min Friday + 7 h 50 Monday
    # P1 runs around the clock.
    first, _ = deadlines(friday_late, "P1", SETTINGS)
    assert first == friday_late + timedelta(minutes=15)
    # A holiday (11 November) and the night do not count.
    holiday_eve = datetime(2026, 11, 10, 23, 0, tzinfo=PARIS)
    assert deadlines(holiday_eve, "P2", SETTINGS)[0] == datetime(2026, 11, 12, 9, 0, tzinfo=PARIS)
    assert not in_business_hours(datetime(2026, 11, 11, 10, 0, tzinfo=PARIS), SETTINGS)
    assert in_business_hours(datetime(2026, 11, 12, 10, 0, tzinfo=PARIS), SETTINGS)
    # Across the change to summer time (28 March 2027) and Easter Monday (29 March 2027):
    # business hours are local hours.
    saturday = datetime(2027, 3, 27, 12, 0, tzinfo=PARIS)
    first, _ = deadlines(saturday, "P2", SETTINGS)
    assert first == datetime(2027, 3, 30, 9, 0, tzinfo=PARIS)
    assert first.astimezone(UTC).hour == 7  # UTC+2 by then
    assert business_minutes_between(friday_late, datetime(2026, 11, 23, 9, 0, tzinfo=PARIS), SETTINGS) == 70


def test_answers_in_free_text_or_choices_skip_cancel_and_corrections() -> None:
    assert parse_answer("impact", "Tout le monde", "fr").value == "organisation"
    assert parse_answer("impact", "organisation", "fr").value == "organisation"  # a button's value
    assert parse_answer("impact", "2", "fr").value == "team"
    assert parse_answer("impact", "only me", "en").value == "individual"
    assert parse_answer("since", "depuis ce matin", "fr").value == "today"
    assert parse_answer("since", "since this afternoon", "en").value == "today"
    assert (
        parse_answer("since", "depuis la mise à jour de lundi", "fr").value
        == "depuis la mise à jour de lundi"
    )
    assert parse_answer("urgency", "je suis complètement bloqué", "fr").value == "high"
    assert parse_answer("urgency", "no rush", "en").value == "low"
    assert parse_answer("urgency", "banane", "fr").kind == "unclear"
    # how blocked, in the person's words: what can no longer be done, or a negated urgency
    assert parse_answer("urgency", "on ne peut plus envoyer les factures", "fr").value == "high"
    assert parse_answer("urgency", "I can't send invoices", "en").value == "high"
    assert parse_answer("urgency", "je me débrouille", "fr").value == "medium"
    assert parse_answer("urgency", "pas urgent", "fr").value == "low"  # was "urgent": high
    assert first_level(fold("ce n'est pas urgent, quand vous pouvez"), URGENCY_PHRASES) == "low"
    assert first_level(fold("not blocking, just annoying"), URGENCY_PHRASES) != "high"
    assert parse_answer("contact", "joignable au 06 12 34 56 78", "fr").value == {"phone": "06 12 34 56 78"}
    assert parse_answer("contact", "ana@example.com", "fr").value == {"email": "ana@example.com"}
    assert parse_answer("contact", "demain", "fr").kind == "unclear"
    assert parse_answer("device", "je ne sais pas", "fr").kind == "skip"
    assert parse_answer("since", "Annuler", "fr").kind == "cancel"
    correction = parse_answer("urgency", "en fait c'est toute l'équipe", "fr")
    assert (correction.kind, correction.slot, correction.value) == ("correct", "impact", "team")
    email = parse_answer("device", "actually my email is bob@example.com", "en")
    assert (email.kind, email.slot, email.value) == ("correct", "contact", {"email": "bob@example.com"})
    assert parse_answer("impact", "we're all blocked", "en").value == "team"
    assert first_level(fold("down for the whole finance team since 9"), IMPACT_PHRASES) == "team"
    # a department named: a team, in the answer or in the request itself
    for named in ("toute la compta", "le service RH", "les commerciaux", "5 personnes", "accounting",
                  "ma collègue et moi", "the sales team"):  # fmt: skip
        assert parse_answer("impact", named, "fr").value == "team", named
    assert first_level(fold("depuis ce matin toute la compta est bloquée"), IMPACT_PHRASES) == "team"
    assert first_level(fold("all of accounting is down"), IMPACT_PHRASES) == "team"
    assert first_level(fold("ça plante toute la journée"), IMPACT_PHRASES) is None  # a time, not a team
    assert parse_answer("impact", "toute la journée", "fr").kind == "unclear"
    # an address given in answer to another question is kept (and the question comes again)
    volunteered = parse_answer("urgency", "bob@example.com", "en")
    assert (volunteered.kind, volunteered.slot, volunteered.value) == (
        "correct",
        "contact",
        {"email": "bob@example.com"},
    )
    assert parse_answer("device", "+33 6 12 34 56 78", "fr").slot == "contact"
    assert (
        parse_answer("since", "depuis le 12 11 2026 vers 10 heures", "fr").kind == "value"
    )  # a date, no phone
    assert parse_answer("device", "thanks!", "en").kind == "unclear"  # courtesy, not a device
    # said back to the person, in their language
    assert corrected("impact", "team", "fr") == "C'est noté : Personnes touchées → Mon équipe."
    assert corrected("contact", {"email": "bob@example.com"}, "en") == "Noted: Email → bob@example.com."


def test_the_dialogue_asks_only_for_what_it_does_not_know() -> None:
    known = {"description": "le vpn coupe", "impact": "team", "email": "ana@example.com"}
    assert missing(known, SETTINGS) == ["since", "urgency", "device"]
    text, options = question("urgency", "en", known)
    assert text.startswith("How blocked are you?") and "skip" in text
    assert [v for _, v in options] == ["low", "medium", "high"]
    text, _ = question("device", "fr", {**known, "_hinted": True})
    assert "passer" not in text
    assert (
        summary(known, "fr")
        == "Problème : le vpn coupe · Personnes touchées : Mon équipe · E-mail : ana@example.com"
    )
    # the time taken from the request, said once: "Depuis : ce matin"
    assert summary({"since": "depuis ce matin"}, "fr") == "Depuis : ce matin"
    assert summary({"since": "since Monday", "impact": "team"}, "en") == "Since: Monday · Affected: My team"


def test_recurring_problems_and_duplicates() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

    def past(
        number: str, days: int, status: str, description: str, category: str = "network", who: str = "ana"
    ) -> PastTicket:
        return PastTicket(number, who, category, description, now - timedelta(days=days), status)

    history = [
        past("HD-1", 40, "closed", "le vpn se coupe toutes les cinq minutes"),  # outside the window
        past("HD-2", 10, "closed", "le VPN coupe sans arrêt"),
        past("HD-3", 3, "resolved", "imprimante bloquée", category="printing"),
        past("HD-4", 2, "closed", "vpn qui coupe", who="bob"),  # someone else
    ]
    relation = relate(
        "ana", "network", "le vpn coupe encore toutes les 5 minutes", None, None, now, history, SETTINGS
    )
    assert relation.recurring and relation.linked == ("HD-2",) and relation.duplicate_of is None
    # The same problem while a ticket is still open: attached to it, not a new ticket.
    open_one = [*history, past("HD-5", 1, "open", "le vpn coupe toutes les cinq minutes")]
    relation = relate(
        "ana", "network", "mon vpn coupe toutes les 5 minutes", None, None, now, open_one, SETTINGS
    )
    assert relation.duplicate_of == "HD-5"
    # A different problem of the same person is a fresh incident.
    relation = relate("ana", "email", "outlook ne s'ouvre plus", None, None, now, open_one, SETTINGS)
    assert not relation.recurring and relation.duplicate_of is None
    # The same asset, whoever reports it.
    on_asset = [
        PastTicket(
            "HD-6", "carl", "hardware", "écran noir", now - timedelta(days=5), "closed", asset="PC-123"
        )
    ]
    relation = relate("dina", "hardware", "PC-123 ne démarre pas", "PC-123", None, now, on_asset, SETTINGS)
    assert relation.recurring and relation.linked == ("HD-6",)


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValidationError, match="default_category"):
        TriageSettings(default_category="nope")
    with pytest.raises(ValidationError, match="timezone"):
        TriageSettings.model_validate({"business_hours": {"timezone": "Mars/Olympus"}})
    with pytest.raises(ValidationError, match="start before"):
        TriageSettings.model_validate({"business_hours": {"start": "18:00", "end": "08:00"}})
    with pytest.raises(ValidationError, match="sla"):
        TriageSettings.model_validate(
            {"sla": {"P1": {"first_response_minutes": 5, "resolution_minutes": 60}}}
        )
    with pytest.raises(ValidationError, match="unknown categories"):
        TriageSettings.model_validate({"rules": [{"name": "x", "raise_to": "P1", "categories": ["nope"]}]})
