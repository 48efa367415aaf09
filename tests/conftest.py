"""Shared fixtures: a real Redis server, the sample configuration, a running Guichet.

Nothing here is skipped: a test that needs a server this machine lacks fails and says which
package to install.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.app import Guichet
from bot.config import Configuration, load_configuration
from tests.level2 import Receiver
from tests.processes import start_redis

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = ROOT / "config"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of our own on a free port, or the one named by GUICHET_TEST_REDIS_URL."""
    if "GUICHET_TEST_REDIS_URL" in os.environ:
        yield os.environ["GUICHET_TEST_REDIS_URL"]
        return
    try:
        process, url = start_redis(tmp_path_factory.mktemp("redis"))
    except RuntimeError as exc:
        pytest.fail(f"these tests need a real Redis: {exc}, or set GUICHET_TEST_REDIS_URL", pytrace=False)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def sample_configuration() -> Configuration:
    return load_configuration(SAMPLE_CONFIG, environ={})


# Trained intent models are shared by the whole run: each is named after its data.
MODEL_DIR = Path(tempfile.gettempdir()) / f"guichet-test-models-{os.getuid()}"


def configuration_for(tmp_path: Path, config_dir: Path = SAMPLE_CONFIG, **overrides: object) -> Configuration:
    """The sample configuration (or another), with its store in tmp_path and HTTP on a free port."""
    environ = {
        "GUICHET_DATA_DIR": str(tmp_path / "data"),
        "GUICHET_HTTP_PORT": "0",
        "GUICHET_SMTP_PORT": "0",
        "GUICHET_MODEL_DIR": str(MODEL_DIR),
    }
    environ.update({k: str(v) for k, v in overrides.items()})
    return load_configuration(config_dir, environ=environ)


@pytest.fixture
async def guichet(tmp_path: Path) -> AsyncIterator[Guichet]:
    """A running Guichet on the sample configuration and the embedded store."""
    app = Guichet(configuration_for(tmp_path))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A level-2 desk on a local port that records every handoff it receives (tests/level2.py)."""
    instance = Receiver()
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
