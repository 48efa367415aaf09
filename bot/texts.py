"""What the bot says, in French and English. One dictionary, so a translation is one place."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "greet": {
        "fr": "Bonjour ! Je suis l'assistant du support informatique de {organisation}. "
        "Décrivez votre question ou votre problème en une phrase, je cherche la réponse.",
        "en": "Hello! I am the IT help desk assistant of {organisation}. "
        "Tell me your question or problem in one sentence and I will look for the answer.",
    },
    "goodbye": {
        "fr": "Au revoir, bonne journée ! Revenez quand vous voulez.",
        "en": "Goodbye, have a good day! Come back any time.",
    },
    "thanks": {
        "fr": "Avec plaisir ! Autre chose ?",
        "en": "You're welcome! Anything else?",
    },
    "help": {
        "fr": "Je réponds aux questions courantes (mot de passe, VPN, Wi-Fi, imprimantes, messagerie, "
        "Teams, logiciels, matériel…) et, si je n'ai pas la réponse, j'ouvre un ticket pour un technicien. "
        "Posez votre question avec vos mots.",
        "en": "I answer common questions (passwords, VPN, Wi-Fi, printers, email, Teams, software, "
        "hardware…) and, when I have no answer, I open a ticket for a technician. Ask in your own words.",
    },
    "ack": {
        "fr": "D'accord. Que puis-je faire d'autre pour vous ?",
        "en": "All right. What else can I do for you?",
    },
    "choose": {
        "fr": "J'ai plusieurs réponses possibles. Laquelle correspond à votre demande ?",
        "en": "I have several possible answers. Which one fits your request?",
    },
    "none_of_these": {"fr": "Aucune de celles-ci", "en": "None of these"},
    "no_answer": {
        "fr": "Je n'ai pas de réponse à cela dans notre base de connaissances. "
        "Voulez-vous que j'ouvre un ticket pour qu'un technicien s'en occupe ?",
        "en": "I have no answer to that in our knowledge base. "
        "Shall I open a ticket so that a technician looks into it?",
    },
    "out_of_scope": {
        "fr": "Je suis l'assistant du support informatique : je ne peux pas vous aider pour cela. "
        "Si vous avez un problème informatique, décrivez-le-moi.",
        "en": "I am the IT help desk assistant: I cannot help with that. "
        "If you have an IT problem, describe it to me.",
    },
    "offer_ticket": {
        "fr": "Je peux ouvrir un ticket pour qu'un technicien vous réponde. Je l'ouvre ?",
        "en": "I can open a ticket so that a technician answers you. Shall I open it?",
    },
    "yes_open": {"fr": "Oui, ouvrir un ticket", "en": "Yes, open a ticket"},
    "no_thanks": {"fr": "Non merci", "en": "No, thanks"},
    "describe_first": {
        "fr": "Bien sûr. Décrivez d'abord votre problème en quelques mots, puis je l'enregistre.",
        "en": "Of course. First describe your problem in a few words, then I will record it.",
    },
    "ticket_opened": {
        "fr": "C'est noté : votre demande porte le numéro {number}. Un technicien du support la reprendra ; "
        "citez ce numéro si vous nous recontactez, sur n'importe quel canal.",
        "en": "Done: your request is number {number}. A support technician will pick it up; "
        "quote this number if you contact us again, on any channel.",
    },
    "ticket_status": {
        "fr": "Vos demandes dans cette conversation : {tickets}. Elles sont en attente d'un technicien.",
        "en": "Your requests in this conversation: {tickets}. They are waiting for a technician.",
    },
    "no_ticket": {
        "fr": "Je ne trouve pas de demande ouverte dans cette conversation.",
        "en": "I find no open request in this conversation.",
    },
    "error": {
        "fr": "Désolé, une erreur s'est produite de mon côté. Pouvez-vous reformuler ?",
        "en": "Sorry, something went wrong on my side. Could you rephrase?",
    },
}


def say(key: str, language: str, **values: str) -> str:
    table = TEXTS[key]
    return table.get(language, table["en"]).format(**values)
