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
        "fr": "C'est noté : votre demande porte le numéro {number} (priorité {priority}). "
        "Un technicien vous répondra ici, au plus tard {first_response}. "
        "Citez ce numéro si vous nous recontactez, sur n'importe quel canal.",
        "en": "Done: your request is number {number} (priority {priority}). "
        "A technician will answer you here by {first_response} at the latest. "
        "Quote this number if you contact us again, on any channel.",
    },
    "email_intro": {
        "fr": "Bonjour{name},\n\nNous avons bien reçu votre message.",
        "en": "Hello{name},\n\nWe have received your message.",
    },
    "email_article": {
        "fr": "Cet article de notre base de connaissances répond peut-être déjà à votre question :",
        "en": "This article from our knowledge base may already answer your question:",
    },
    "email_articles": {
        "fr": "Ces articles de notre base de connaissances pourraient vous aider :",
        "en": "These articles from our knowledge base might help:",
    },
    "email_footer": {
        "fr": "Pour compléter votre demande, répondez simplement à ce message en gardant le numéro {number} "
        "dans l'objet. Si l'article ci-dessus a réglé le problème, répondez « résolu ».\n\n"
        "— {organisation} (réponse automatique)",
        "en": "To add anything, simply reply to this message, keeping the number {number} in the subject. "
        'If the article above solved the problem, reply "solved".\n\n'
        "— {organisation} (automatic reply)",
    },
    "email_footer_plain": {
        "fr": "Pour compléter votre demande, répondez simplement à ce message en gardant le numéro {number} "
        "dans l'objet.\n\n— {organisation} (réponse automatique)",
        "en": "To add anything, simply reply to this message, keeping the number {number} in the subject.\n\n"
        "— {organisation} (automatic reply)",
    },
    "ticket_recurring": {
        "fr": "J'ai noté que ce problème revient (demandes précédentes : {linked}) : je l'ai signalé au technicien.",
        "en": "I noted that this problem keeps coming back (earlier requests: {linked}): the technician is told.",
    },
    "ticket_attached": {
        "fr": "Vous avez déjà une demande ouverte pour ce problème : {number}. J'y ai ajouté votre message, "
        "inutile d'en ouvrir une autre.",
        "en": "You already have an open request for this problem: {number}. I added your message to it, "
        "no need for another one.",
    },
    "ticket_kept": {
        "fr": "C'est noté : votre demande porte le numéro {number}. Citez-le si vous nous recontactez.",
        "en": "Done: your request is number {number}. Quote it if you contact us again.",
    },
    "ticket_status_one": {
        "fr": "Demande {number} ({title}) : {status}.",
        "en": "Request {number} ({title}): {status}.",
    },
    "ticket_unknown": {
        "fr": "Je ne trouve pas la demande {number} parmi les vôtres. Vérifiez le numéro.",
        "en": "I cannot find request {number} among yours. Please check the number.",
    },
    "no_ticket": {
        "fr": "Je ne trouve aucune demande à votre nom.",
        "en": "I find no request in your name.",
    },
    "status_open": {"fr": "en attente d'un technicien", "en": "waiting for a technician"},
    "status_assigned": {"fr": "prise en charge par {agent}", "en": "being handled by {agent}"},
    "status_waiting": {
        "fr": "le technicien attend votre réponse",
        "en": "the technician is waiting for your answer",
    },
    "status_resolved": {"fr": "résolue", "en": "resolved"},
    "status_closed": {"fr": "clôturée", "en": "closed"},
    "status_cancelled": {"fr": "annulée", "en": "cancelled"},
    "did_it_help": {"fr": "Cela a-t-il réglé votre problème ?", "en": "Did this solve your problem?"},
    "helped_yes": {"fr": "Oui, c'est réglé", "en": "Yes, it's solved"},
    "helped_no": {"fr": "Non, pas encore", "en": "No, not yet"},
    "nothing_to_cancel": {
        "fr": "D'accord. Aucune demande n'est en cours ici : il n'y a rien à annuler. Que puis-je faire pour vous ?",
        "en": "All right. No request is open here: there is nothing to cancel. What can I do for you?",
    },
    "contact_noted": {
        "fr": "Merci, je garde ces coordonnées pour un éventuel ticket. Quelle est votre question ?",
        "en": "Thank you, I'll keep these contact details for a ticket if one is needed. What is your question?",
    },
    "glad": {
        "fr": "Parfait, content que ce soit réglé ! Autre chose ?",
        "en": "Great, glad it's solved! Anything else?",
    },
    "sorry_qualify": {
        "fr": "Désolé que cela n'ait pas suffi. J'ouvre un ticket pour un technicien, quelques questions d'abord.",
        "en": "Sorry that was not enough. I will open a ticket for a technician; a few questions first.",
    },
    "qualify_start": {
        "fr": "Je prépare le ticket pour un technicien ; quelques questions d'abord.",
        "en": "I am preparing the ticket for a technician; a few questions first.",
    },
    "qualify_cancelled": {
        "fr": "D'accord, j'annule : aucun ticket n'a été ouvert. Autre chose ?",
        "en": "All right, cancelled: no ticket was opened. Anything else?",
    },
    "relayed": {
        "fr": "Message ajouté à votre demande {number} ; le technicien vous répondra ici.",
        "en": "Message added to your request {number}; the technician will answer you here.",
    },
    "ticket_cancelled": {
        "fr": "Votre demande {number} est annulée. Je reste à votre disposition.",
        "en": "Your request {number} is cancelled. I remain at your service.",
    },
    "agent_assigned": {
        "fr": "{agent} du support a pris en charge votre demande {number}.",
        "en": "{agent} from support has taken over your request {number}.",
    },
    "agent_waiting": {
        "fr": "Le technicien attend votre réponse sur la demande {number}.",
        "en": "The technician is waiting for your answer on request {number}.",
    },
    "agent_resolved": {
        "fr": "Le support a marqué votre demande {number} comme résolue.",
        "en": "Support marked your request {number} as resolved.",
    },
    "is_it_solved": {"fr": "Le problème est-il réglé ?", "en": "Is the problem solved?"},
    "solved_thanks": {
        "fr": "Merci ! La demande {number} est clôturée. Je reste là si besoin.",
        "en": "Thank you! Request {number} is closed. I am here if you need anything.",
    },
    "reopened": {
        "fr": "Je rouvre la demande {number} et préviens le technicien. Décrivez ce qui ne va toujours pas.",
        "en": "I reopened request {number} and told the technician. Describe what is still wrong.",
    },
    "handed_back": {
        "fr": "Le technicien vous a repassé l'assistant. Je reste à votre disposition.",
        "en": "The technician handed you back to the assistant. I am at your service.",
    },
    "link_code": {
        "fr": "Votre code de liaison : {code}. Tapez-le dans l'autre canal (web chat, Telegram…) "
        "dans les 10 minutes : vos demandes y seront visibles.",
        "en": "Your link code: {code}. Type it in the other channel (web chat, Telegram…) within "
        "10 minutes: your requests will be visible there.",
    },
    "link_unverified": {
        "fr": "Pour lier ce canal, demandez « lier mes canaux » là où votre adresse est vérifiée "
        "(Slack, e-mail), puis tapez ici le code reçu.",
        "en": 'To link this channel, ask "link my channels" where your address is verified '
        "(Slack, email), then type the code here.",
    },
    "linked": {
        "fr": "C'est fait : ce canal est lié à {email}. Vos demandes y sont visibles.",
        "en": "Done: this channel is linked to {email}. Your requests are visible here.",
    },
    "too_many_guesses": {
        "fr": "Trop d'essais de codes ou de numéros de demande : réessayez dans {minutes} min.",
        "en": "Too many tries of codes or request numbers: try again in {minutes} min.",
    },
    "link_invalid": {
        "fr": "Ce code de liaison n'est pas valable (ou a expiré). Demandez-en un nouveau.",
        "en": "This link code is not valid (or has expired). Ask for a new one.",
    },
    "ticket_closed_notice": {
        "fr": "Votre demande {number} est clôturée.",
        "en": "Your request {number} is closed.",
    },
    "error": {
        "fr": "Désolé, une erreur s'est produite de mon côté. Pouvez-vous reformuler ?",
        "en": "Sorry, something went wrong on my side. Could you rephrase?",
    },
}


def say(key: str, language: str, **values: str) -> str:
    table = TEXTS[key]
    return table.get(language, table["en"]).format(**values)
