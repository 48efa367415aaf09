"""What a request already says about itself, before anyone asks: its category (from the
understood intent, else keywords), who is affected, how blocked the person is, whether it is
a security matter, the device or application, since when, and how to reach them. A value the
text does not give stays None, and the qualification dialogue asks for it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from nlu.engine import Parse
from nlu.text import fold
from triage.config import TriageSettings

# Accent-folded phrases, French and English. Checked in order: the first level that matches wins.
# The teams and departments of a company, as people name them (folded): "la compta" is a team.
UNITS = (
    r"compta|comptabilite|comptables|rh|drh|ressources humaines|paie|finance|finances|marketing|"
    r"commerciaux|commercial|ventes?|vendeurs|logistique|achats|acheteurs|support|accueil|standard|"
    r"hotline|production|juridique|informatique|dsi|secretariat|agence|atelier|magasin|entrepot|"
    r"labo|laboratoire|pole|departement|direction|equipe|service|bureau|team|devs?|developpeurs|"
    r"techniciens|consultants|stagiaires|profs|enseignants|agents|conseillers|caisses?|"
    r"accounting|accounts|payroll|hr|sales|purchasing|legal|warehouse|reception|front desk|"
    r"helpdesk|engineering|developers|department|office|branch|staff|shop|store|lab"
)

IMPACT_PHRASES: Sequence[tuple[str, Sequence[str]]] = (
    (
        "organisation",
        (
            "tout le monde",
            "toute la boite",
            "toute l'entreprise",
            "toute la societe",
            "tous les sites",
            "tout le batiment",
            "tout l'etage",
            "personne ne peut",
            "personne n'arrive",
            "aucun utilisateur",
            "tous les utilisateurs",
            "tous les collaborateurs",
            "tous les postes",
            "everyone",
            "everybody",
            "nobody can",
            "no one can",
            "the whole company",
            "the whole office",
            "whole building",
            "all users",
            "all staff",
            "company-wide",
            "entire company",
            "entire office",
            "whole floor",
            "site entier",
        ),
    ),
    (
        "team",
        (
            "mon equipe",
            "dans l'equipe",
            "de l'equipe",
            "toute l'equipe",
            "notre equipe",
            "mes collegues",
            "plusieurs collegues",
            "le service",
            "tout le service",
            "notre service",
            "plusieurs personnes",
            "nous sommes plusieurs",
            "on est plusieurs",
            "my team",
            "our team",
            "the whole team",
            "my colleagues",
            "several colleagues",
            "several people",
            "our department",
            "the department",
            "a few of us",
            "several of us",
            "whole team",
            "we're all",
            "we are all",
            "all of us",
            "on est tous",
            "nous sommes tous",
            # "the whole finance team": a name between the words
            r"~(?:whole|entire) (?:[a-z0-9-]+ ){1,2}(?:team|department|dept)",
            # "toute la compta", "tous les commerciaux", "all of accounting": a whole unit
            rf"~(?:tou(?:t|te|s|tes) (?:la |le |les |l')|all (?:of )?(?:the )?|the whole )(?:{UNITS})",
        ),
    ),
    (
        "individual",
        ("juste moi", "seulement moi", "que moi", "moi seul", "only me", "just me", "only my", "just my"),
    ),
)

URGENCY_PHRASES: Sequence[tuple[str, Sequence[str]]] = (
    (
        "high",
        (
            "urgent",
            "urgence",
            "bloque",
            "bloquee",
            "bloques",
            "bloquees",
            "bloquante",
            "ne peut travailler",
            "ne peut plus travailler",
            "peuvent plus travailler",
            "ne pouvons plus travailler",
            "bloquant",
            "impossible de travailler",
            "je ne peux plus travailler",
            "je ne peux pas travailler",
            "on ne peut plus travailler",
            "plus rien ne marche",
            "completement en panne",
            "totalement en panne",
            "a l'arret",
            "asap",
            "au plus vite",
            "tout de suite",
            "immediatement",
            "critique",
            "blocked",
            "blocking",
            "can't work",
            "cannot work",
            "can not work",
            "unable to work",
            "completely down",
            "totally down",
            "is down",
            "are down",
            "urgently",
            "emergency",
            "critical",
            "right now",
            "immediately",
            "production down",
            "outage",
            "panne generale",
        ),
    ),
    (
        "low",
        (
            "pas urgent",
            "quand vous pourrez",
            "quand vous aurez le temps",
            "rien de grave",
            "pas grave",
            "quand vous pouvez",
            "rien ne presse",
            "not a big deal",
            "pas presse",
            "pas pressé",
            "a l'occasion",
            "pour info",
            "pas bloquant",
            "no rush",
            "not urgent",
            "when you can",
            "when you have time",
            "whenever",
            "low priority",
            "not blocking",
            "no hurry",
            "nice to have",
        ),
    ),
    (
        "medium",
        (
            "lent",
            "lente",
            "ralenti",
            "genant",
            "de temps en temps",
            "parfois",
            "par moments",
            "intermittent",
            "slow",
            "sometimes",
            "annoying",
            "from time to time",
            "now and then",
            "workaround",
            "contournement",
        ),
    ),
)

SECURITY_WORDS = (
    "phishing", "hameconnage", "virus", "ransomware", "rancongiciel", "malware", "pirate", "piratage",
    "hacked", "hacker", "compromis", "compromised", "vol de", "vole", "stolen", "perdu mon", "lost my",
    "mail suspect", "suspicious", "arnaque", "scam", "fuite de donnees", "data leak", "chiffre mes fichiers",
    "encrypted my files", "rancon", "ransom",
)  # fmt: skip

_SINCE = re.compile(r"\b(?:depuis|since|for the (?:last|past)|il y a)\s+([^,.;!?]{2,40})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Assessment:
    category: str
    category_confidence: float
    impact: str | None
    urgency: str | None
    security: bool
    device: str | None
    since: str | None
    contact: dict[str, str] = field(default_factory=dict)


def first_level(folded: str, table: Sequence[tuple[str, Sequence[str]]]) -> str | None:
    for level, phrases in table:
        if any(_has(folded, fold(p)) for p in phrases):
            return level
    return None


def _has(folded: str, phrase: str) -> bool:
    """The phrase as whole words; "~…" is a regular expression (of folded, lower-case text)."""
    pattern = phrase[1:] if phrase.startswith("~") else re.escape(phrase)
    # "pas urgent", "not blocking": a phrase negated says the opposite (its own phrase elsewhere)
    return re.search(rf"(?<!\w)(?<!pas )(?<!not )(?<!non )(?<!no ){pattern}(?!\w)", folded) is not None


def category_of(text: str, parse: Parse | None, settings: TriageSettings) -> tuple[str, float]:
    """The category from the desk's ticket-history model, else from the understood intent,
    when either is sure enough; else from keywords."""
    if settings.category_model:
        from triage import history  # NumPy models: loaded only by desks that have one

        model, _ = history.load(settings.category_model)
        found, confidence = model.top(text)
        if confidence >= settings.category_model_above and settings.category(found):
            return found, confidence
    by_intent = {i: c.name for c in settings.categories for i in c.intents}
    if parse is not None:
        ranking = list(parse.ranking) or ([parse.intent] if parse.intent else [])
        for scored in ranking[:3]:
            if scored.name in by_intent and scored.confidence >= 0.35:
                return by_intent[scored.name], scored.confidence
    folded = fold(text)
    best, hits = settings.default_category, 0
    for category in settings.categories:
        count = sum(
            1 for k in category.keywords if _has(folded, fold(k)) or (len(k) >= 5 and fold(k) in folded)
        )
        if count > hits:
            best, hits = category.name, count
    return best, (0.3 if hits else 0.0)


def assess(text: str, parse: Parse | None, settings: TriageSettings, language: str) -> Assessment:
    folded = fold(text)
    category, confidence = category_of(text, parse, settings)
    # Words of an attack or a theft make it a security matter, whatever else it is about.
    security = category == "security" or any(_has(folded, fold(w)) for w in SECURITY_WORDS)
    if security and settings.category("security"):
        category = "security"
    entities = parse.entities if parse is not None else ()
    device = next((e.value for e in entities if e.entity in ("asset_tag", "hostname")), None) or next(
        (e.value for e in entities if e.entity == "application"), None
    )
    since = next((e.text for e in entities if e.entity == "time"), None)
    if since is None and (match := _SINCE.search(text)):
        since = match.group(0).strip()
    contact = {e.entity: e.value for e in entities if e.entity in ("email", "phone")}
    return Assessment(
        category=category,
        category_confidence=confidence,
        impact=first_level(folded, IMPACT_PHRASES),
        urgency=first_level(folded, URGENCY_PHRASES),
        security=security,
        device=device,
        since=since,
        contact=contact,
    )


async def assess_aside(text: str, parse: Parse | None, settings: TriageSettings, language: str) -> Assessment:
    """`assess` for a conversation on the event loop. A desk's ticket-history model costs up to
    tens of milliseconds a ticket (a fine-tuned network, in NumPy): it runs in a thread, so
    other people's messages are not held up meanwhile. Without one, assessing is microseconds."""
    if settings.category_model:
        return await asyncio.to_thread(assess, text, parse, settings, language)
    return assess(text, parse, settings, language)
