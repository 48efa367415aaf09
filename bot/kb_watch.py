"""Picks up edited, added and removed knowledge-base articles while Guichet runs: no restart,
no retraining (the knowledge base is searched by similarity, rebuilt in milliseconds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from nlu.engine import BuiltinEngine
from nlu.kb import load_articles

log = logging.getLogger("guichet.kb")


class KnowledgeBaseWatcher:
    def __init__(self, kb_dir: Path, engine: BuiltinEngine) -> None:
        self.kb_dir = kb_dir
        self.engine = engine
        self._seen = self._fingerprint()
        self._task: asyncio.Task[None] | None = None

    def _fingerprint(self) -> frozenset[tuple[str, int, int]]:
        if not self.kb_dir.is_dir():
            return frozenset()
        return frozenset((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in self.kb_dir.glob("*/*.md"))

    def check_now(self) -> bool:
        """Reload if anything changed; True when it did. A broken article is left out and logged."""
        try:
            current = self._fingerprint()
        except OSError:  # a file removed while we looked: look again next time
            return False
        if current == self._seen:
            return False
        articles, problems = load_articles(self.kb_dir)
        for problem in problems:
            log.warning("knowledge base: %s", problem)
        self.engine.reload_articles(articles)
        self._seen = current
        log.info("knowledge base reloaded: %d articles", len(articles))
        return True

    def start(self, interval: float) -> None:
        self._task = asyncio.create_task(self._watch(interval), name="kb-watcher")

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            # reading the files, and with the encoder embedding the articles: off the loop
            await asyncio.to_thread(self.check_now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
