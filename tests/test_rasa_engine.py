"""The Rasa engine against a real Rasa 3.6 server trained on the sample configuration's NLU files,
and what happens when Rasa is down or slow: the built-in engine answers, nobody goes unanswered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.app import Guichet
from bot.config import load_configuration
from nlu.engine import BuiltinEngine, RasaEngine
from tests.conftest import SAMPLE_CONFIG
from tests.processes import ROOT, free_port

RASA_SCRIPT = ROOT / "nlu" / "rasa" / "rasa.sh"


@contextlib.contextmanager
def trained_rasa_server(log: Path, environ: dict[str, str] | None = None) -> Iterator[str]:
    """`nlu/rasa/rasa.sh train` on config/nlu (or reused from the cache), then `serve` on a free port."""
    env = {**os.environ, **(environ or {})}
    # Installing Rasa takes about 2 minutes and training the sample a minute with the fast
    # pipeline (DIET: 20 to 40 on 2 cores), once: both are kept under ~/.cache/guichet.
    trained = subprocess.run(
        [str(RASA_SCRIPT), "train", str(SAMPLE_CONFIG)], capture_output=True, text=True, timeout=3600, env=env
    )
    if trained.returncode != 0:
        pytest.fail(
            f"Rasa could not be set up or trained (nlu/rasa/rasa.sh train):\n{trained.stderr[-3000:]}",
            pytrace=False,
        )
    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(RASA_SCRIPT), "serve", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240  # Rasa takes about 40 s to load a model, more on a busy machine
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"the Rasa server exited:\n{log.read_text()[-3000:]}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}/status", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Rasa server did not come up in 240 s:\n{log.read_text()[-3000:]}", pytrace=False
                )
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


# The tests' Rasa models: Rasa's fast pipeline (nlu/rasa/config-fast.yml), the same server, HTTP
# API and engine code path as DIET at a minute's training instead of half an hour; kept apart
# from the default work folder, whose DIET model bench/nlu.py reads. DIET is measured in bench/.
RASA_TEST_WORK = Path.home() / ".cache" / "guichet" / "rasa-work-tests"


@pytest.fixture(scope="session")
def rasa_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `rasa run --enable-api` with Rasa's fast pipeline, trained on config/nlu (once: the
    model is named after its data and kept in RASA_TEST_WORK)."""
    environ = {"GUICHET_RASA_WORK": str(RASA_TEST_WORK), "GUICHET_RASA_PIPELINE": "fast"}
    with trained_rasa_server(tmp_path_factory.mktemp("rasa") / "rasa.log", environ) as url:
        yield url


@pytest.fixture(scope="module")
def builtin() -> BuiltinEngine:
    configuration = load_configuration(SAMPLE_CONFIG, environ={})
    return BuiltinEngine(configuration.training, configuration.articles)


@pytest.fixture
async def rasa(rasa_url: str, builtin: BuiltinEngine) -> AsyncIterator[RasaEngine]:
    engine = RasaEngine(rasa_url, builtin, timeout=10)
    await engine.start()
    yield engine
    await engine.close()


async def test_rasa_understands_with_guichets_language_and_knowledge_base(rasa: RasaEngine) -> None:
    parse = await rasa.parse("bonjour")
    assert parse.engine == "rasa"
    assert parse.intent is not None and parse.intent.name == "greet"
    assert parse.language == "fr"
    parse = await rasa.parse("my account is locked")
    assert parse.engine == "rasa"
    assert parse.language == "en"
    assert parse.kb_matches[0].article_id == "account-locked"


async def test_a_conversation_runs_on_rasa(rasa_url: str, tmp_path: Path) -> None:
    configuration = load_configuration(
        SAMPLE_CONFIG,
        environ={
            "GUICHET_DATA_DIR": str(tmp_path / "data"),
            "GUICHET_HTTP_PORT": "0",
            "GUICHET_SMTP_PORT": "0",
            "GUICHET_RASA_URL": rasa_url,
        },
    )
    app = Guichet(configuration)
    await app.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{app.url}/model/parse", json={"text": "thank you so much"}) as answer:
                body = await answer.json()
            assert body["engine"] == "rasa" and body["intent"]["name"] == "thanks"
            async with http.post(
                f"{app.url}/webhooks/rest/webhook", json={"sender": "r", "message": "bonjour"}
            ) as answer:
                (reply,) = await answer.json()
        assert reply["text"].startswith("Bonjour")
    finally:
        await app.stop()


async def test_rasa_down_falls_back_to_the_builtin_engine(builtin: BuiltinEngine) -> None:
    engine = RasaEngine(f"http://127.0.0.1:{free_port()}", builtin, timeout=2)
    await engine.start()
    try:
        parse = await engine.parse("bonjour")
    finally:
        await engine.close()
    assert parse.engine == "builtin"
    assert parse.intent is not None and parse.intent.name == "greet"


async def test_rasa_too_slow_falls_back_within_the_timeout(builtin: BuiltinEngine) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/model/parse", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    engine = RasaEngine(f"http://127.0.0.1:{port}", builtin, timeout=0.5)
    await engine.start()
    try:
        started = time.monotonic()
        parse = await engine.parse("my account is locked")
        assert time.monotonic() - started < 1.5
    finally:
        await engine.close()
        await runner.cleanup()
    assert parse.engine == "builtin"
    assert parse.kb_matches[0].article_id == "account-locked"


async def test_rasas_fast_pipeline_understands_through_guichet(rasa: RasaEngine) -> None:
    """GUICHET_RASA_PIPELINE=fast: Rasa's LogisticRegressionClassifier instead of DIET, for a desk
    that cannot wait half an hour (bench/nlu.py prints both training times)."""
    config = (RASA_TEST_WORK / "config.yml").read_text()
    assert "LogisticRegressionClassifier" in config and "DIETClassifier" not in config
    greeting = await rasa.parse("bonjour")
    locked = await rasa.parse("my account is locked")
    assert greeting.engine == "rasa" and greeting.intent is not None
    assert greeting.intent.name == "greet" and greeting.language == "fr"
    assert locked.engine == "rasa" and locked.language == "en"
    assert locked.kb_matches[0].article_id == "account-locked"
