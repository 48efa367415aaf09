"""`guichet report unanswered` and `guichet stats`: what the manager does with the figures.

The report groups the questions nobody could answer (close paraphrases together: "l'imprimante
du 3e bourre" and "imprimante 3eme etage bourrage papier"), per language, biggest groups first,
and writes a draft knowledge-base article for each of the most frequent: front matter filled
(id, title, the questions as people asked them, tags), the answer left for a person to write.
Move a finished draft into kb/<lang>/: the running Guichet picks it up without a restart.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.admin_api import TOKEN_FILE
from bot.errors import StoreLockedError
from bot.messages import utcnow
from bot.settings import Settings
from bot.stats import Group, group_questions
from bot.store.base import Question


def draft(group: Group) -> tuple[str, str]:
    """(file name, Markdown text) of a draft article for a group of questions."""
    title = group.questions[0].rstrip(" ?!.")
    title = title[:1].upper() + title[1:]
    slug = _slug(title) or "question"
    phrasings = list(dict.fromkeys(group.questions))[:15]
    front = {
        "id": f"draft-{slug}",
        "title": title,
        "questions": phrasings,
        "tags": ["brouillon" if group.language == "fr" else "draft"],
    }
    todo = (
        f"À COMPLÉTER : demandé {group.size} fois sans réponse. Écrivez ici la réponse, "
        "étape par étape, puis déplacez ce fichier dans kb/fr/."
        if group.language == "fr"
        else f"TO COMPLETE: asked {group.size} times with no answer. Write the answer here, "
        "step by step, then move this file into kb/en/."
    )
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n" + todo + "\n"
    return f"draft-{slug}.md", text


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:48].strip("-")


def report(questions: Sequence[Question], out: Path, top: int) -> list[tuple[Group, Path | None]]:
    groups = group_questions(questions)
    written: list[tuple[Group, Path | None]] = []
    for rank, group in enumerate(groups):
        if rank < top and group.size >= 2:  # a question asked once is not yet a FAQ
            name, text = draft(group)
            path = out / group.language / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append((group, path))
        else:
            written.append((group, None))
    return written


# Reading the questions: from the running process, or from the store when none runs ------------
def _admin(settings: Settings) -> tuple[str, str] | None:
    try:
        data = json.loads((Path(settings.store.path) / TOKEN_FILE).read_text())
        return str(data["url"]), str(data["token"])
    except (OSError, ValueError, KeyError):
        return None


async def _from_store(settings: Settings, days: int) -> list[Question]:
    from bot.app import make_store_for

    store = make_store_for(settings)
    await store.open()
    try:
        return await store.unanswered(utcnow() - timedelta(days=days))
    finally:
        await store.close()


def _ask_running_process(settings: Settings, path: str, method: str = "GET") -> Any:
    """The embedded store is held by a running Guichet: ask it over its admin API instead."""
    admin = _admin(settings)
    if admin is None:
        raise StoreLockedError("the store is in use and the running Guichet's admin token cannot be read")
    url, token = admin
    request = urllib.request.Request(
        f"{url}{path}", method=method, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def load_questions(settings: Settings, days: int) -> list[Question]:
    try:
        return asyncio.run(_from_store(settings, days))
    except StoreLockedError:
        return [
            Question.from_dict(q) for q in _ask_running_process(settings, f"/admin/unanswered?days={days}")
        ]


def unanswered_command(settings: Settings, days: int, out: Path, top: int) -> int:
    try:
        questions = load_questions(settings, days)
    except (StoreLockedError, OSError, urllib.error.URLError) as exc:
        print(f"cannot read the unanswered questions: {exc}", file=sys.stderr)
        return 1
    if not questions:
        print(f"No unanswered question in the last {days} days. / Aucune question sans réponse.")
        return 0
    written = report(questions, out, top)
    print(f"{len(questions)} unanswered questions in the last {days} days, {len(written)} groups:\n")
    for group, path in written[: max(top, 10)]:
        where = f"→ {path}" if path else ""
        print(f"  {group.size:>4} × [{group.language}] {group.questions[0][:70]} {where}")
    drafts = [p for _, p in written if p]
    if drafts:
        print(f"\n{len(drafts)} draft articles in {out}/: complete them, then move them into kb/<lang>/.")
    return 0


# A person's data ---------------------------------------------------------------------------------
async def _privacy_direct(settings: Settings, person: str, erase: bool) -> dict[str, Any]:
    from bot import privacy
    from bot.app import make_store_for

    store = make_store_for(settings)
    await store.open()
    try:
        if erase:
            data = Path(settings.store.path)
            erased = await privacy.forget(store, person, data / "attachments", data / "sent-mail")
            return erased.to_dict()
        return await privacy.export(store, person)
    finally:
        await store.close()


def privacy_command(settings: Settings, person: str, erase: bool, out: Path | None) -> int:
    """`guichet forget` and `guichet export`: through the store, or the running process's API."""
    try:
        try:
            result = asyncio.run(_privacy_direct(settings, person, erase))
        except StoreLockedError:
            where = f"/admin/people/{urllib.parse.quote(person, safe='')}"
            result = _ask_running_process(settings, where, "DELETE" if erase else "GET")
    except (StoreLockedError, OSError, urllib.error.URLError) as exc:
        print(f"cannot reach the data: {exc}", file=sys.stderr)
        return 1
    if not erase:
        text = json.dumps(result, ensure_ascii=False, indent=2)
        if out is None:
            print(text)
        else:
            out.write_text(text + "\n", encoding="utf-8")
            print(
                f"{len(result['tickets'])} ticket(s), {len(result['conversations'])} conversation(s) → {out}"
            )
        return 0
    print(f"Erased for {result['person']} / effacé :")
    print(f"  conversations deleted        {len(result['conversations_deleted'])}")
    print(f"  transcript lines deleted     {result['transcript_lines_deleted']}")
    print(
        f"  tickets anonymised           {len(result['tickets_anonymised'])} {' '.join(result['tickets_anonymised'])}"
    )
    print(f"  attachments deleted          {result['attachments_deleted']}")
    print(f"  sent mails deleted           {result['sent_mails_deleted']}")
    print(f"  undelivered messages dropped {result['undelivered_messages_dropped']}")
    print(f"  unanswered questions deleted {result['unanswered_questions_deleted']}")
    if result["tickets_anonymised"]:
        print("Level 2 keeps its own copy of these tickets: erase them there too.")
    return 0


def stats_command(settings: Settings) -> int:
    admin = _admin(settings)
    if admin is None:
        print(
            "Guichet is not running here (start it with `guichet run`). / Guichet ne tourne pas.",
            file=sys.stderr,
        )
        return 1
    url, token = admin
    print(f"{url}/stats?token={token}")
    return 0
