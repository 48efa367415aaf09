"""The web chat in a real headless Chromium (Debian's), driven by Playwright as a person would use it."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.app import Guichet
from bot.messages import Outbound
from tests.conftest import configuration_for
from tests.processes import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BOT = '[data-testid="guichet-message"][data-from="bot"]'
USER = '[data-testid="guichet-message"][data-from="user"]'

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which("chromium"):
        pytest.fail(
            "Chromium is not installed: the web chat tests need a real browser (apt-get install chromium)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield instance
        finally:
            await instance.close()


async def ask(page: Page, text: str) -> None:
    box = page.get_by_test_id("guichet-input")
    await box.fill(text)
    await box.press("Enter")


async def test_a_french_visitor_asks_and_reads_the_answer(browser: Browser, guichet: Guichet) -> None:
    context = await browser.new_context(locale="fr-FR")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(guichet.url + "/")
    await expect(page.get_by_test_id("guichet-input")).to_have_attribute("aria-label", "Votre message")

    await ask(page, "j'ai oublié mon mot de passe")
    article = guichet.engine.article("fr", "password-reset")
    assert article is not None
    answer = page.locator(BOT).nth(-2)
    await expect(answer).to_contain_text(article.title)
    await expect(answer).to_contain_text(article.body.splitlines()[0])
    await expect(page.locator(BOT).last).to_have_text("Cela a-t-il réglé votre problème ?")

    # The conversation survives a reload: the same messages are shown again, in order.
    await page.reload()
    await expect(page.locator(USER)).to_have_count(1)
    await expect(page.locator(USER).first).to_have_text("j'ai oublié mon mot de passe")
    await expect(page.locator(BOT).first).to_contain_text(article.title)

    # Something the knowledge base does not cover: a ticket is offered, with buttons.
    await ask(page, "la machine à café du 3e étage chante de l'opéra")
    choice = page.get_by_test_id("guichet-choice").filter(has_text="Oui, ouvrir un ticket")
    await expect(choice).to_be_visible()
    await choice.click()
    # The qualification: buttons for who is affected and how blocked, free text for the rest.
    for question, button in (
        ("Depuis quand ?", "Aujourd'hui"),
        ("Qui est touché ?", "Tout le monde"),
        ("À quel point êtes-vous bloqué ?", "Je suis bloqué"),
    ):
        await expect(page.locator(BOT).last).to_contain_text(question)
        await page.get_by_test_id("guichet-choice").filter(has_text=button).last.click()
    await expect(page.locator(BOT).last).to_contain_text("Sur quel appareil")
    await ask(page, "la machine à café MAC-3")
    await expect(page.locator(BOT).last).to_contain_text("Comment le technicien peut-il vous joindre")
    await ask(page, "ana@example.com")
    # Everyone, fully blocked: P1, by the matrix of the sample configuration.
    await expect(page.locator(BOT).last).to_contain_text("HD-20")
    await expect(page.locator(BOT).last).to_contain_text("priorité P1")
    assert errors == []
    await context.close()


async def test_a_late_reply_takes_its_place_in_the_conversation(browser: Browser, guichet: Guichet) -> None:
    """With several servers, a reply committed before a crash may arrive after later ones, or
    twice: the widget shows the conversation in its sequence, each message once."""
    context = await browser.new_context(locale="fr-FR")
    page = await context.new_page()
    await page.goto(guichet.url + "/")
    await ask(page, "bonjour")
    await expect(page.locator(BOT)).to_have_count(1)
    webchat: Any = guichet.channels["webchat"]
    (conversation,) = list(webchat._sockets)
    await webchat.deliver_here(Outbound("webchat", conversation, "Étape 2", sender="agent"), 21)
    await webchat.deliver_here(Outbound("webchat", conversation, "Étape 1", sender="agent"), 20)
    # Delivery is at least once (a process may die after sending, before noting it): shown once.
    await webchat.deliver_here(Outbound("webchat", conversation, "Étape 1", sender="agent"), 20)
    await expect(page.locator("[data-testid=guichet-message][data-from=agent]")).to_have_text(
        ["Étape 1", "Étape 2"]
    )
    await context.close()


async def test_text_is_never_rendered_as_html(browser: Browser, guichet: Guichet) -> None:
    context = await browser.new_context(locale="fr-FR")
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(guichet.url + "/")
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script><b>gras</b>'
    await ask(page, hostile)
    await expect(page.locator(USER).last).to_have_text(hostile)
    # the reply has come (an answer, or with the sentence vector an article and "did this help?")
    await expect(page.locator(BOT)).not_to_have_count(0)
    panel = page.get_by_test_id("guichet-panel")
    assert await panel.locator("img, script, b").count() == 0
    assert dialogs == []
    await context.close()


async def test_an_english_browser_gets_english_strings_and_answers(
    browser: Browser, guichet: Guichet
) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(guichet.url + "/")
    await expect(page.get_by_test_id("guichet-input")).to_have_attribute("aria-label", "Your message")
    await ask(page, "my account is locked")
    article = guichet.engine.article("en", "account-locked")
    assert article is not None
    await expect(page.locator(BOT).nth(-2)).to_contain_text(article.title)
    await expect(page.locator(BOT).last).to_have_text("Did this solve your problem?")
    await context.close()


@contextlib.asynccontextmanager
async def company_site(guichet_url: str) -> AsyncIterator[str]:
    """A company's own page, served from another origin on loopback, embedding the widget with one
    tag, with CSS that would break a widget that did not isolate itself."""
    page = f"""<!doctype html><html><head><style>div {{ display: none !important; }}
    button {{ font-size: 1px !important; }}</style></head>
    <body><h1>Intranet</h1><script src="{guichet_url}/widget.js" async></script></body></html>"""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_widget_embeds_in_another_site_with_one_script_tag(
    browser: Browser, tmp_path: Path
) -> None:
    port = free_port()
    configuration = configuration_for(tmp_path, GUICHET_HTTP_PORT=port)
    guichet_url = f"http://127.0.0.1:{port}"
    async with company_site(guichet_url) as intranet, company_site(guichet_url) as elsewhere:
        settings = configuration.settings
        # Only the intranet is listed as a site allowed to open conversations.
        webchat = settings.webchat.model_copy(update={"allowed_origins": (intranet,)})
        app = Guichet(
            dataclasses.replace(configuration, settings=settings.model_copy(update={"webchat": webchat}))
        )
        await app.start()
        try:
            context = await browser.new_context(locale="fr-FR")
            page = await context.new_page()
            await page.goto(intranet + "/")
            await page.get_by_test_id("guichet-launcher").click()
            await ask(page, "bonjour")
            await expect(page.locator(BOT).last).to_contain_text("Bonjour")

            # A site the help desk did not list may load the script but not open a conversation.
            other = await context.new_page()
            await other.goto(elsewhere + "/")
            await other.get_by_test_id("guichet-launcher").click()
            await ask(other, "bonjour")
            await other.wait_for_timeout(1000)
            await expect(other.get_by_test_id("guichet-status")).not_to_have_attribute(
                "data-status", "online"
            )
            await expect(other.locator(BOT)).to_have_count(0)
            await context.close()
        finally:
            await app.stop()
