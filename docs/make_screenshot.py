"""Makes docs/webchat.png, the README's picture of the web chat: a real Guichet on the sample
configuration, a real headless Chromium, one question in French.

    .venv/bin/python docs/make_screenshot.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import Guichet  # noqa: E402
from bot.config import load_configuration  # noqa: E402


async def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        configuration = load_configuration(
            ROOT / "config",
            environ={
                **os.environ,
                "GUICHET_DATA_DIR": data,
                "GUICHET_HTTP_PORT": "0",
                "GUICHET_SMTP_PORT": "0",
            },
        )
        app = Guichet(configuration)
        await app.start()
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                )
                page = await browser.new_page(locale="fr-FR", viewport={"width": 1100, "height": 720})
                await page.goto(app.url + "/")
                for question in ("bonjour", "mon compte est bloqué"):
                    box = page.get_by_test_id("guichet-input")
                    await box.fill(question)
                    await box.press("Enter")
                    await page.wait_for_timeout(600)
                await page.screenshot(path=str(ROOT / "docs" / "webchat.png"))
                await browser.close()
        finally:
            await app.stop()
    print("wrote docs/webchat.png")


if __name__ == "__main__":
    asyncio.run(main())
