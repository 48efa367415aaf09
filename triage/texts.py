"""What the qualification dialogue says, in French and English."""

from __future__ import annotations

QUESTIONS: dict[str, dict[str, str]] = {
    "description": {
        "fr": "Décrivez le problème en quelques mots : que se passe-t-il exactement ?",
        "en": "Describe the problem in a few words: what exactly happens?",
    },
    "since": {"fr": "Depuis quand ?", "en": "Since when?"},
    "impact": {"fr": "Qui est touché ?", "en": "Who is affected?"},
    "urgency": {"fr": "À quel point êtes-vous bloqué ?", "en": "How blocked are you?"},
    "device": {
        "fr": "Sur quel appareil ou quelle application ? (par exemple PC-12345, Outlook)",
        "en": "Which device or application? (for example PC-12345, Outlook)",
    },
    "contact": {
        "fr": "Comment le technicien peut-il vous joindre ? Donnez un e-mail ou un numéro de téléphone.",
        "en": "How can the technician reach you? Give an email address or a phone number.",
    },
}

HINT = {
    "fr": "(« passer » pour ne pas répondre, « annuler » pour abandonner)",
    "en": "('skip' to leave it out, 'cancel' to stop)",
}

# Said before a question asked again, its answer not understood: what would be.
AGAIN = {
    "choice": {
        "fr": "Je n'ai pas compris votre réponse : choisissez-en une ci-dessous, ou répondez « passer ».",
        "en": "I did not understand your answer: pick one below, or reply 'skip'.",
    },
    "contact": {
        "fr": "Je n'ai trouvé ni adresse e-mail ni numéro de téléphone dans votre réponse.",
        "en": "I found no email address or phone number in your answer.",
    },
    "default": {
        "fr": "Je n'ai pas compris votre réponse (« passer » pour ne pas répondre).",
        "en": "I did not understand your answer ('skip' to leave it out).",
    },
}

CHOICES: dict[str, list[tuple[str, dict[str, str]]]] = {
    "since": [
        ("today", {"fr": "Aujourd'hui", "en": "Today"}),
        ("this_week", {"fr": "Cette semaine", "en": "This week"}),
        ("longer", {"fr": "Plus longtemps", "en": "Longer"}),
    ],
    "impact": [
        ("individual", {"fr": "Juste moi", "en": "Just me"}),
        ("team", {"fr": "Mon équipe", "en": "My team"}),
        ("organisation", {"fr": "Tout le monde", "en": "Everyone"}),
    ],
    "urgency": [
        ("low", {"fr": "Ça peut attendre", "en": "It can wait"}),
        ("medium", {"fr": "Je suis ralenti", "en": "I am slowed down"}),
        ("high", {"fr": "Je suis bloqué", "en": "I am blocked"}),
    ],
}

LABELS = {
    "description": {"fr": "Problème", "en": "Problem"},
    "since": {"fr": "Depuis", "en": "Since"},
    "impact": {"fr": "Personnes touchées", "en": "Affected"},
    "urgency": {"fr": "Blocage", "en": "Blocked"},
    "device": {"fr": "Appareil / application", "en": "Device / application"},
    "email": {"fr": "E-mail", "en": "Email"},
    "phone": {"fr": "Téléphone", "en": "Phone"},
}


def label(value: str, slot: str, language: str) -> str:
    """A choice value as the person reads it ("team" → "Mon équipe")."""
    for choice, titles in CHOICES.get(slot, []):
        if choice == value:
            return titles.get(language, titles["en"])
    return value
