"""A desk that is not the sample: its own articles, no intents, the sample's guichet.yml (so the
sentence encoder is on). What a new customer meets on the first day, over the REST channel: a
paraphrase that shares no word with an article's questions gets that article at once, in any
language; a request the desk does not cover gets none; `guichet check` says how well the desk
will be answered and which articles collide or have too few questions."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.app import Guichet
from tests.conftest import SAMPLE_CONFIG, configuration_for
from tests.test_config_check import check

# A bicycle rental and repair shop: written for this test, in the format of config/kb.
ARTICLES = {
    "fr/location-velo.md": (
        "Louer un vélo",
        ["Comment louer un vélo", "Réserver un vélo pour le week-end", "Tarifs de location"],
        "Réservez en ligne sur velos-martin.example.fr ou en boutique, avec une pièce d'identité.\n"
        "La demi-journée coûte 12 €, la journée 20 €, le week-end 35 €.\n"
        "Le vélo se prend dès 9 h et se rend avant 19 h.",
    ),
    "fr/crevaison.md": (
        "Faire réparer une crevaison",
        ["Mon pneu est crevé", "Réparer une roue", "Chambre à air percée"],
        "Passez à l'atelier avec le vélo : la réparation se fait en 20 minutes, pour 9 €.\n"
        "Sur la route, l'assistance répond au 01 23 45 67 89 et vient sous une heure.\n"
        "Les vélos loués sont réparés sans frais.",
    ),
    "fr/antivol.md": (
        "Clé d'antivol perdue",
        ["J'ai perdu la clé de mon cadenas", "Antivol bloqué", "Ouvrir un antivol sans clé"],
        "Venez avec le vélo et une preuve d'achat : l'atelier coupe l'antivol gratuitement.\n"
        "Pour un vélo loué, un double de la clé est à l'accueil.",
    ),
    "fr/horaires.md": (
        "Horaires de l'atelier",
        ["Quand ouvre l'atelier", "Horaires du magasin", "Êtes-vous ouverts le dimanche"],
        "L'atelier et le magasin sont ouverts du mardi au samedi, de 9 h à 19 h.\n"
        "Fermés le dimanche, le lundi et les jours fériés.",
    ),
    "fr/caution.md": (
        "Caution et dépôt de garantie",
        ["Combien coûte la caution", "Quand récupérer ma caution", "Dépôt de garantie non rendu"],
        "La caution est de 300 € par vélo, prise par empreinte de carte bancaire.\n"
        "Elle est libérée le jour du retour si le vélo est rendu en bon état.",
    ),
    "fr/batterie.md": (
        "Batterie de vélo électrique",
        ["Ma batterie ne charge plus", "Autonomie de la batterie", "Remplacer la batterie"],
        "Chargez la batterie à fond avant chaque sortie ; comptez 60 km par charge.\n"
        "Si le voyant reste rouge après 6 heures de charge, apportez-la à l'atelier pour un test.",
    ),
    "en/gift-voucher.md": (
        "Gift vouchers",
        ["Can I buy a gift card", "Use a voucher", "Voucher expired"],
        "Vouchers from 20 to 200 are sold in the shop and online, valid for one year.\n"
        "Give the code when you book or pay at the counter.",
    ),
    "en/child-seat.md": (
        "Child seats and trailers",
        ["Do you rent child seats", "Bike trailer for kids", "Baby seat on a rental bike"],
        "Child seats (up to 22 kg) cost 5 a day, trailers for two children 10 a day.\n"
        "Book them with the bike; a helmet for the child is included.",
    ),
}


def write_desk(config: Path, articles: dict[str, tuple[str, list[str], str]]) -> None:
    config.mkdir(parents=True)
    shutil.copy(SAMPLE_CONFIG / "guichet.yml", config / "guichet.yml")
    for relative, (title, questions, body) in articles.items():
        path = config / "kb" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        listed = "\n".join(f"  - {q}" for q in questions)
        path.write_text(
            f"---\nid: {path.stem}\ntitle: {title}\nquestions:\n{listed}\ntags: []\n---\n{body}\n",
            encoding="utf-8",
        )


async def first_reply(guichet: Guichet, sender: str, text: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        url = f"{guichet.url}/webhooks/rest/webhook"
        async with http.post(url, json={"sender": sender, "message": text}) as answer:
            assert answer.status == 200
            replies = await answer.json()
    assert replies, text
    first: dict[str, object] = replies[0]
    return first


@pytest.fixture(params=["none", "multilingual-e5-small"])
async def bike_shop(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Guichet]:
    """The shop's Guichet, with the knowledge base's second encoder off and on."""
    config = tmp_path / "config"
    write_desk(config, ARTICLES)
    configuration = configuration_for(
        tmp_path, config, GUICHET_NLU_ENCODER="use-multilingual-3", GUICHET_KB_ENCODER=request.param
    )
    assert not configuration.training.intents  # articles only: nothing of the sample's nlu/
    app = Guichet(configuration)
    await app.start()
    try:
        assert app.engine.kb.feature_set() == ("vectors" if request.param == "none" else "vectors_e5")
        yield app
    finally:
        await app.stop()


async def test_a_paraphrase_in_other_words_gets_its_article_at_once(bike_shop: Guichet) -> None:
    # No word in common with the article's title or questions ("Quand ouvre l'atelier",
    # "Horaires du magasin", "Êtes-vous ouverts le dimanche")
    reply = await first_reply(bike_shop, "p1", "c'est ouvert quels jours la boutique ?")
    assert str(reply["text"]).startswith("Horaires de l'atelier\n\n"), reply
    # Nor here; less sure, but the battery article is among the choices, first
    reply = await first_reply(bike_shop, "p2", "le voyant reste rouge même branché toute la nuit")
    offered = [str(b["payload"]) for b in reply.get("buttons", [])]  # type: ignore[attr-defined]
    assert str(reply["text"]).startswith("Batterie de vélo électrique\n\n") or (
        offered[:1] == ["article:fr:batterie"]
    ), reply


async def test_a_question_in_the_other_language_finds_an_article_written_in_one(bike_shop: Guichet) -> None:
    # The battery article exists in French only; the vouchers one in English only.
    reply = await first_reply(bike_shop, "en-1", "my e-bike battery doesn't hold a charge anymore")
    offered = [str(b["payload"]) for b in reply.get("buttons", [])]  # type: ignore[attr-defined]
    assert str(reply["text"]).startswith("Batterie de vélo électrique\n\n") or (
        "article:fr:batterie" in offered
    ), reply
    reply = await first_reply(bike_shop, "fr-1", "vous vendez des bons cadeaux ?")
    offered = [str(b["payload"]) for b in reply.get("buttons", [])]  # type: ignore[attr-defined]
    assert str(reply["text"]).startswith("Gift vouchers\n\n") or "article:en:gift-voucher" in offered, reply


async def test_a_request_the_desk_does_not_cover_gets_no_article(bike_shop: Guichet) -> None:
    for n, text in enumerate(
        [
            "quelle est la recette de la tarte tatin",
            "who won the football match last night",
            "mon chat ne mange plus depuis deux jours",
        ]
    ):
        reply = await first_reply(bike_shop, f"oos-{n}", text)
        titles = [title for title, _, _ in ARTICLES.values()]
        assert not any(str(reply["text"]).startswith(f"{t}\n\n") for t in titles), (text, reply)
        offered = [str(b["payload"]) for b in reply.get("buttons", [])]  # type: ignore[attr-defined]
        assert not any(p.startswith("article:") for p in offered), (text, reply)


def test_guichet_check_estimates_the_desk_and_names_what_to_mend(tmp_path: Path) -> None:
    config = tmp_path / "config"
    desk = dict(ARTICLES)
    # the same need written twice, and an article with a single question
    desk["fr/tarifs.md"] = (
        "Prix de la location",
        ["Combien coûte la location d'un vélo", "Prix pour louer un vélo", "Tarif à la journée"],
        "La journée coûte 20 €, le week-end 35 €.",
    )
    desk["fr/casque.md"] = (
        "Prêt de casque",
        ["Vous prêtez des casques"],
        "Un casque est prêté avec chaque vélo.",
    )
    write_desk(config, desk)
    result = check(config, estimate=True, GUICHET_NLU_ENCODER="use-multilingual-3")
    assert result.returncode == 0, result.stderr
    assert "answered at once and right" in result.stdout, result.stdout
    assert "too few questions: 'casque'" in result.stdout, result.stdout
    collisions = [line for line in result.stdout.splitlines() if "collision" in line]
    assert any("'tarifs'" in line and "'location-velo'" in line for line in collisions), result.stdout
