"""The `triage:` section of guichet.yml: categories, the priority matrix and its rules, SLAs,
business hours and holidays, recurring-problem detection. The defaults are the sample IT
help desk, so `TriageSettings()` is ready to use and a desk overrides only what differs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

PRIORITIES = ("P1", "P2", "P3", "P4")
IMPACTS = ("individual", "team", "organisation")  # just me / my team / everyone
URGENCIES = ("low", "medium", "high")  # can wait / slowed down / fully blocked


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Category(_Frozen):
    name: str
    fr: str
    en: str
    intents: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()  # accent-folded words or phrases, when no intent decides


class PriorityRule(_Frozen):
    """Raise a priority when every condition given holds."""

    name: str
    raise_to: str | None = None  # at least this priority
    raise_by: int = Field(0, ge=0, le=3)  # or this many levels up
    vip: bool = False  # the requester is in vip_requesters
    impact: str | None = None
    urgency: str | None = None
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()  # any of these (accent-folded) in the request

    @model_validator(mode="after")
    def _does_something(self) -> PriorityRule:
        if self.raise_to is None and not self.raise_by:
            raise ValueError(f"rule {self.name!r}: set raise_to (P1–P4) or raise_by (levels)")
        if self.raise_to is not None and self.raise_to not in PRIORITIES:
            raise ValueError(f"rule {self.name!r}: raise_to must be one of {', '.join(PRIORITIES)}")
        if self.impact is not None and self.impact not in IMPACTS:
            raise ValueError(f"rule {self.name!r}: impact must be one of {', '.join(IMPACTS)}")
        if self.urgency is not None and self.urgency not in URGENCIES:
            raise ValueError(f"rule {self.name!r}: urgency must be one of {', '.join(URGENCIES)}")
        return self


class Sla(_Frozen):
    first_response_minutes: int = Field(ge=1)
    resolution_minutes: int = Field(ge=1)
    business_hours: bool = True  # count only business hours (P1 usually runs around the clock)


class BusinessHours(_Frozen):
    timezone: str = "Europe/Paris"
    days: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0
    start: time = time(8, 0)
    end: time = time(18, 0)
    holidays: tuple[date, ...] = tuple(
        date.fromisoformat(d)
        for d in (
            # French public holidays, 2026 and 2027
            "2026-01-01", "2026-04-06", "2026-05-01", "2026-05-08", "2026-05-14", "2026-05-25",
            "2026-07-14", "2026-08-15", "2026-11-01", "2026-11-11", "2026-12-25",
            "2027-01-01", "2027-03-29", "2027-05-01", "2027-05-06", "2027-05-08", "2027-05-17",
            "2027-07-14", "2027-08-15", "2027-11-01", "2027-11-11", "2027-12-25",
        )
    )  # fmt: skip

    @model_validator(mode="after")
    def _sane(self) -> BusinessHours:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r} (e.g. Europe/Paris)") from exc
        if self.start >= self.end:
            raise ValueError("business hours must start before they end")
        if not self.days or any(d not in range(7) for d in self.days):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return self


_SAMPLE_CATEGORIES = (
    Category(
        name="access",
        fr="Comptes et accès",
        en="Accounts and access",
        intents=(
            "password_reset", "password_expired", "account_locked", "mfa_problem",
            "onboarding", "offboarding", "shared_drive_access", "shared_mailbox",
        ),
        keywords=("mot de passe", "password", "compte", "account", "acces", "access", "droits", "permission", "login"),
    ),
    Category(
        name="network",
        fr="Réseau et VPN",
        en="Network and VPN",
        intents=("vpn_cannot_connect", "vpn_slow", "wifi_guest", "wifi_corporate", "remote_desktop"),
        keywords=("vpn", "wifi", "wi-fi", "reseau", "network", "internet", "connexion", "bureau a distance"),
    ),
    Category(
        name="email",
        fr="Messagerie",
        en="Email",
        intents=("email_not_receiving", "mailbox_full", "out_of_office", "email_on_phone"),
        keywords=("mail", "outlook", "messagerie", "boite", "mailbox", "inbox"),
    ),
    Category(
        name="collaboration",
        fr="Teams, Slack et réunions",
        en="Teams, Slack and meetings",
        intents=("calendar_sharing", "teams_audio", "teams_screen_sharing", "slack_notifications", "meeting_room_video"),
        keywords=("teams", "slack", "reunion", "meeting", "visio", "calendrier", "calendar", "zoom"),
    ),
    Category(
        name="printing",
        fr="Impression et scan",
        en="Printing and scanning",
        intents=("printer_not_printing", "printer_add", "scan_to_email"),
        keywords=("imprim", "print", "scan", "copieur", "toner"),
    ),
    Category(
        name="files",
        fr="Fichiers et stockage",
        en="Files and storage",
        intents=("onedrive_sync", "file_restore", "disk_full"),
        keywords=("onedrive", "sharepoint", "fichier", "file", "dossier", "folder", "disque", "disk", "stockage", "storage"),
    ),
    Category(
        name="software",
        fr="Logiciels",
        en="Software",
        intents=("software_install", "software_license", "windows_updates", "certificate_error", "app_crash"),
        keywords=("logiciel", "software", "application", "licence", "license", "installer", "install", "mise a jour", "update", "plante", "crash"),
    ),
    Category(
        name="hardware",
        fr="Matériel",
        en="Hardware",
        intents=(
            "laptop_slow", "laptop_wont_start", "hardware_broken", "docking_monitor",
            "keyboard_mouse", "bluetooth_headset", "company_phone", "usb_blocked", "bitlocker_recovery",
        ),
        keywords=("ordinateur", "pc", "laptop", "portable", "ecran", "screen", "clavier", "keyboard", "souris", "mouse", "casque", "headset", "telephone", "phone", "batterie", "battery"),
    ),
    Category(
        name="security",
        fr="Sécurité",
        en="Security",
        intents=("phishing_report", "lost_stolen_device"),
        keywords=(
            "phishing", "hameconnage", "virus", "ransomware", "rancongiciel", "pirate", "hacked", "malware",
            "vole", "stolen", "suspect", "suspicious", "fuite", "leak", "arnaque", "scam",
        ),
    ),
    Category(name="other", fr="Autre", en="Other"),
)  # fmt: skip

_SAMPLE_MATRIX: dict[str, dict[str, str]] = {
    "organisation": {"high": "P1", "medium": "P2", "low": "P3"},
    "team": {"high": "P2", "medium": "P3", "low": "P3"},
    "individual": {"high": "P3", "medium": "P4", "low": "P4"},
}

_SAMPLE_RULES = (
    PriorityRule(name="everyone down", raise_to="P1", impact="organisation", urgency="high"),
    PriorityRule(name="security incident", raise_to="P2", categories=("security",)),
    PriorityRule(name="VIP requester", raise_by=1, vip=True),
)

_SAMPLE_SLA = {
    "P1": Sla(first_response_minutes=15, resolution_minutes=4 * 60, business_hours=False),
    "P2": Sla(first_response_minutes=60, resolution_minutes=8 * 60),
    "P3": Sla(first_response_minutes=4 * 60, resolution_minutes=3 * 10 * 60),
    "P4": Sla(first_response_minutes=10 * 60, resolution_minutes=5 * 10 * 60),
}


class TriageSettings(_Frozen):
    categories: tuple[Category, ...] = _SAMPLE_CATEGORIES
    default_category: str = "other"
    default_impact: str = "individual"
    default_urgency: str = "medium"
    matrix: Mapping[str, Mapping[str, str]] = Field(default_factory=lambda: _SAMPLE_MATRIX)
    rules: tuple[PriorityRule, ...] = _SAMPLE_RULES
    vip_requesters: tuple[str, ...] = ()
    sla: Mapping[str, Sla] = Field(default_factory=lambda: _SAMPLE_SLA)
    business_hours: BusinessHours = BusinessHours()
    recurring_window_days: int = Field(30, ge=1, le=3650)
    similar_description: float = Field(0.5, gt=0, le=1)
    # A model trained on the desk's ticket history (`guichet triage train`, triage/history.py):
    # its directory, relative to the configuration directory; its category is taken when its
    # confidence reaches `category_model_above`, before the intent and the keywords.
    category_model: str = ""
    category_model_above: float = Field(0.5, ge=0, le=1)
    # What the qualification dialogue asks, in this order, when it is not known yet.
    slots: tuple[str, ...] = ("description", "since", "impact", "urgency", "device", "contact")

    @model_validator(mode="after")
    def _consistent(self) -> TriageSettings:
        names = [c.name for c in self.categories]
        if self.default_category not in names:
            raise ValueError(
                f"default_category {self.default_category!r} is not one of the categories {names}"
            )
        if len(set(names)) != len(names):
            raise ValueError("two categories have the same name")
        for impact in IMPACTS:
            row = self.matrix.get(impact)
            if row is None or any(row.get(u) not in PRIORITIES for u in URGENCIES):
                raise ValueError(
                    f"matrix: impact {impact!r} needs a priority (P1–P4) for each urgency {', '.join(URGENCIES)}"
                )
        missing = [p for p in PRIORITIES if p not in self.sla]
        if missing:
            raise ValueError(f"sla: no target for {', '.join(missing)}")
        for rule in self.rules:
            unknown = [c for c in rule.categories if c not in names]
            if unknown:
                raise ValueError(f"rule {rule.name!r}: unknown categories {unknown}")
        if self.default_impact not in IMPACTS or self.default_urgency not in URGENCIES:
            raise ValueError("default_impact / default_urgency must be one of the levels")
        unknown_slots = [
            s
            for s in self.slots
            if s not in ("description", "since", "impact", "urgency", "device", "contact")
        ]
        if unknown_slots:
            raise ValueError(f"unknown slots {unknown_slots}")
        return self

    def category(self, name: str) -> Category | None:
        return next((c for c in self.categories if c.name == name), None)
