"""Knowledge-base answering on desks Guichet was never tuned on: does the first reply give the
right article?

    python bench/kb.py [--desk NAME ...] [--limit 600 | --full] [--data ../shared/data]
                       [--json figures.json]

Each desk runs as a new customer would run it: a configuration folder holding the desk's
`kb/` (and `nlu/` only where the desk has one) beside a copy of config/guichet.yml (so the
sentence encoder is on), a Guichet started in this process on the embedded store and a free
port, and every question sent as a new conversation through the REST channel
(`POST /webhooks/rest/webhook`, four conversations at a time). The first reply is judged as
the person sees it:

* right at once: its text is the expected article (its title, then its body);
* at once or one click: that, or the expected article among the buttons offered to choose
  (`article:<lang>:<id>`);
* wrong at once: another article given at once;
* out of scope (no article answers it), given an article at once / offered choices;
* anything else (no answer and a ticket offered, small talk) is neither.

The cost of a message is the wall clock of its request, reply included, with four under way.

The desks, in three sections that must not be pooled:

* frozen desks (bench/desks: logistique, paie-rh, boutique): help desks with articles and no
  intents, their questions written blind, before anyone ran Guichet on them, and never tuned on
  (bench/desks/README.md). Their figures are the honest "out of the box" ones, reported apart
  so that no one reads a tuned desk's figure as what a customer gets. The run refuses to start
  when a file there differs from bench/desks/FROZEN.sha256, or was added or removed.
* development desks (bench/dev-desks: mairie, saas): written the same way, after the frozen
  ones, to be tuned on: where Guichet's constants and choices are fit, with the public sets.
  Their figures are tuned figures, reported apart.
* public data sets as desks (../shared/data, read in place, never copied): CLINC150, BANKING77
  and HWU64, one English article per intent (its name as the title, three of its training
  lines chosen with random.Random(42) as the article's questions, a placeholder body) and no
  intents; the test lines are the questions (--limit of them per set, chosen with the same
  seed; CLINC150's out-of-scope test lines too, capped by the same limit). The knowledge base's
  ranking is fit on them and the development desks (bench/kb_fit.py); they are intent sets,
  not help desks: articles with real answers read better.
* the sample desk (config/: its kb/ and nlu/), on the held-out requests that bench/nlu.py
  uses for its "right article at once" figure (tests/data/nlu_heldout.yml, the requests whose
  intent an article answers, and tests/data/out_of_scope.csv), sent without a language hint
  as bench/nlu.py parses them. Guichet's constants were tuned on this desk: it is the ceiling
  the others are compared with, not a generalisation figure.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import Guichet  # noqa: E402
from bot.config import load_configuration  # noqa: E402
from bot.errors import ConfigError  # noqa: E402
from bot.progress import Progress  # noqa: E402
from nlu.datasets import Examples, load_banking77, load_clinc150, load_hwu64  # noqa: E402
from nlu.kb import Article  # noqa: E402

DESKS = ROOT / "bench" / "desks"
FROZEN_LIST = DESKS / "FROZEN.sha256"
FROZEN = tuple(sorted(p.name for p in DESKS.iterdir() if (p / "questions.csv").is_file()))
DEV_DESKS = ROOT / "bench" / "dev-desks"
DEVELOPMENT = tuple(
    sorted(p.name for p in DEV_DESKS.iterdir() if (p / "questions.csv").is_file())
    if DEV_DESKS.is_dir()
    else ()
)
PUBLIC = ("clinc150", "banking77", "hwu64")
SAMPLE = "sample"
SECTIONS = {
    "frozen": "frozen desks (never tuned on)",
    "development": "development desks (written like the frozen ones, tuned on)",
    "public": "public data sets as desks (the ranking is fit on them; one article per intent, placeholder bodies)",
    "sample": "sample desk (tuned on)",
}
CONCURRENCY = 4  # conversations under way at once
SEED = 42
WARM_UP = "hello"  # one message before the timed ones, not counted: the first pays for lazy loading


@dataclass(frozen=True)
class Question:
    text: str
    language: str | None  # the hint sent in the metadata; None: Guichet guesses
    article: str | None  # the id of the article that answers it; None: out of scope


@dataclass(frozen=True)
class Desk:
    name: str
    section: str
    questions: tuple[Question, ...]
    copied: tuple[Path, ...] = ()  # folders copied into the configuration (kb/, nlu/)
    written: Mapping[str, str] = field(default_factory=dict)  # path in the configuration → text


@dataclass(frozen=True)
class Reply:
    """What the first reply to a question did."""

    given: str | None  # the article given at once
    offered: tuple[str, ...]  # the articles offered to choose
    seconds: float
    failed: str = ""  # the request did not get its replies (HTTP status, timeout)


@dataclass
class Row:
    desk: str
    section: str
    articles: int = 0
    in_scope: int = 0
    out_of_scope: int = 0
    right: int = 0
    right_or_click: int = 0
    wrong: int = 0
    oos_given: int = 0
    oos_offered: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    start_seconds: float | None = None
    asking_seconds: float | None = None  # all the questions, CONCURRENCY at a time
    failed_requests: int = 0
    error: str = ""  # the desk could not be run at all


class DeskError(Exception):
    """A desk that cannot be built or started; the run goes on with the others."""


# --- the desks ---------------------------------------------------------------------------------


def frozen_problems() -> list[str]:
    """Every file of bench/desks that differs from FROZEN.sha256, or was added or removed."""
    listed: dict[str, str] = {}
    for line in FROZEN_LIST.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {
        f"./{p.relative_to(DESKS).as_posix()}"
        for p in DESKS.rglob("*")
        if p.is_file() and p.name != FROZEN_LIST.name
    }
    problems = [f"added: {name}" for name in sorted(present - listed.keys())]
    problems += [f"removed: {name}" for name in sorted(listed.keys() - present)]
    for name in sorted(present & listed.keys()):
        if hashlib.sha256((DESKS / name).read_bytes()).hexdigest() != listed[name]:
            problems.append(f"changed: {name}")
    return problems


def written_desk(name: str, section: str) -> Desk:
    """A desk of bench/desks (frozen) or bench/dev-desks (development): kb/ and questions.csv."""
    folder = (DESKS if section == "frozen" else DEV_DESKS) / name
    with (folder / "questions.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    questions = tuple(
        Question(r["question"], r["language"].strip() or None, r["article"].strip() or None) for r in rows
    )
    return Desk(name, section, questions, copied=(folder / "kb",))


def article_id(intent: str) -> str:
    """card_arrival → card-arrival (kebab-case: lower case, one hyphen for anything else)."""
    return re.sub(r"[^a-z0-9]+", "-", intent.lower()).strip("-")


def readable(intent: str) -> str:
    """card_arrival → Card arrival."""
    words = intent.replace("_", " ").lower().strip()
    return words[:1].upper() + words[1:]


def article_file(intent: str, questions: Sequence[str]) -> str:
    front = {"id": article_id(intent), "title": readable(intent), "questions": list(questions), "tags": []}
    body = f"Placeholder answer for the intent {intent} ({readable(intent).lower()})."
    return f"---\n{yaml.safe_dump(front, allow_unicode=True, sort_keys=False)}---\n{body}\n"


def sampled(lines: Examples, limit: int | None) -> Examples:
    """`limit` lines chosen with the fixed seed, in the order of the corpus (all without a limit)."""
    if limit is None or limit >= len(lines):
        return list(lines)
    return [lines[n] for n in sorted(random.Random(SEED).sample(range(len(lines)), limit))]


def public_desk(name: str, train: Examples, test: Examples, outside: Examples, limit: int | None) -> Desk:
    by_intent: dict[str, list[str]] = {}
    for text, intent in train:
        by_intent.setdefault(intent, []).append(text)
    rng = random.Random(SEED)
    written: dict[str, str] = {}
    for intent in sorted(by_intent):
        lines = by_intent[intent]
        path = f"kb/en/{article_id(intent)}.md"
        if path in written:
            raise DeskError(f"{name}: two intents give the article id {article_id(intent)!r}")
        written[path] = article_file(intent, rng.sample(lines, min(3, len(lines))))
    unknown = sorted({intent for _, intent in test} - by_intent.keys())
    if unknown:
        raise DeskError(f"{name}: test intents without training lines: {', '.join(unknown)}")
    questions = [Question(text, "en", article_id(intent)) for text, intent in sampled(test, limit)]
    questions += [Question(text, "en", None) for text, _ in sampled(outside, limit)]
    return Desk(name, "public", tuple(questions), written=written)


def public_splits(name: str, data: Path) -> tuple[Examples, Examples, Examples]:
    """(train, in-scope test, out-of-scope test) of a public set."""
    try:
        if name == "clinc150":
            s = load_clinc150(data / "clinc150" / "data_full.json")
            return s["train"], s["test"], s["oos_test"]
        if name == "banking77":
            s = load_banking77(data / "banking77")
            return s["train"], s["test"], []
        s = load_hwu64(data / "hwu64")
        return s["train"], s["test"], []
    except (ValueError, KeyError) as exc:  # DatasetError is a ValueError
        raise DeskError(f"{name}: cannot read it from {data}: {exc}") from exc


def sample_desk() -> Desk:
    """config/ on the questions and expected articles of bench/nlu.py's desk_answers."""
    from bench.nlu import splits

    configuration = load_configuration(ROOT / "config", environ={})
    answers = {intent: a.id for a in configuration.articles for intent in a.answers}
    _, _, test = splits("desk", ROOT)
    questions = tuple(
        Question(text, None, answers.get(intent))
        for text, intent in test
        if intent in answers or intent == "oos"
    )
    return Desk(SAMPLE, "sample", questions, copied=(ROOT / "config" / "kb", ROOT / "config" / "nlu"))


def build(name: str, data: Path, limit: int | None) -> Desk:
    if name in FROZEN:
        return written_desk(name, "frozen")
    if name in DEVELOPMENT:
        return written_desk(name, "development")
    if name in PUBLIC:
        train, test, outside = public_splits(name, data)
        return public_desk(name, train, test, outside, limit)
    return sample_desk()


# --- running one desk --------------------------------------------------------------------------


def write_configuration(desk: Desk, folder: Path) -> Path:
    config = folder / "config"
    config.mkdir(parents=True)
    shutil.copy(ROOT / "config" / "guichet.yml", config / "guichet.yml")
    for source in desk.copied:
        shutil.copytree(source, config / source.name)
    for relative, text in desk.written.items():
        path = config / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return config


KB_ENCODER = "none"  # --kb-encoder: nlu.kb_encoder for every desk


def start_guichet(config: Path, folder: Path, models: Path) -> Guichet:
    # As tests/conftest.py's configuration_for: the store in the desk's folder, free ports.
    environ = {
        "GUICHET_DATA_DIR": str(folder / "data"),
        "GUICHET_HTTP_PORT": "0",
        "GUICHET_SMTP_PORT": "0",
        "GUICHET_MODEL_DIR": str(models),
        "GUICHET_KB_ENCODER": KB_ENCODER,
    }
    try:
        return Guichet(load_configuration(config, environ=environ))
    except ConfigError as exc:
        raise DeskError(f"its configuration does not load: {exc}") from exc


def article_texts(articles: Sequence[Article]) -> list[tuple[str, str]]:
    """(the text of the reply that gives it, its id), longest first: a prefix never wins."""
    texts = [(f"{a.title}\n\n{a.body}", a.id) for a in articles]
    return sorted(texts, key=lambda t: -len(t[0]))


def judge(replies: Any, texts: Sequence[tuple[str, str]], seconds: float) -> Reply:
    first = replies[0] if isinstance(replies, list) and replies and isinstance(replies[0], dict) else {}
    text = str(first.get("text") or "")
    given = next((id_ for whole, id_ in texts if text.startswith(whole)), None)
    buttons = first.get("buttons") or []
    payloads = [str(b.get("payload", "")) for b in buttons if isinstance(b, dict)]
    offered = tuple(p.split(":", 2)[2] for p in payloads if p.startswith("article:") and p.count(":") >= 2)
    return Reply(given, offered, seconds)


async def ask(http: aiohttp.ClientSession, url: str, question: Question, sender: str) -> Any:
    metadata = {"language": question.language} if question.language else {}
    body = {"sender": sender, "message": question.text, "metadata": metadata}
    async with http.post(url, json=body) as response:
        if response.status != 200:
            raise DeskError(f"HTTP {response.status}: {(await response.text())[:200]}")
        return await response.json()


async def ask_all(app: Guichet, desk: Desk) -> list[Reply]:
    """Each question as a new conversation, CONCURRENCY at a time; the first reply judged."""
    url = f"{app.url}/webhooks/rest/webhook"
    texts = article_texts(app.configuration.articles)
    run = secrets.token_hex(4)  # fresh sender ids, whatever the store holds
    replies: list[Reply | None] = [None] * len(desk.questions)
    pending = iter(enumerate(desk.questions))  # shared by the workers: each takes the next one
    progress = Progress(f"{desk.name}: asking", len(desk.questions))
    done = 0

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal done
        for n, question in pending:
            started = time.perf_counter()
            try:
                answer = await ask(http, url, question, f"kb-{run}-{n}")
            except (DeskError, aiohttp.ClientError, TimeoutError) as exc:
                replies[n] = Reply(None, (), time.perf_counter() - started, str(exc) or type(exc).__name__)
            else:
                replies[n] = judge(answer, texts, time.perf_counter() - started)
            done += 1
            progress.update(done)

    async with aiohttp.ClientSession() as http:
        await ask(http, url, Question(WARM_UP, "en", None), f"kb-{run}-warm-up")
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
    progress.close()
    return [r for r in replies if r is not None]


def score(row: Row, questions: Sequence[Question], replies: Sequence[Reply]) -> Row:
    for question, reply in zip(questions, replies, strict=True):
        if question.article is None:
            row.out_of_scope += 1
            row.oos_given += reply.given is not None
            row.oos_offered += bool(reply.offered)
        else:
            row.in_scope += 1
            row.right += reply.given == question.article
            row.wrong += reply.given is not None and reply.given != question.article
            row.right_or_click += reply.given == question.article or question.article in reply.offered
        row.failed_requests += bool(reply.failed)
    times = sorted(r.seconds * 1000 for r in replies)
    if times:
        row.median_ms = statistics.median(times)
        row.p95_ms = times[min(len(times) - 1, int(0.95 * len(times)))]
    return row


async def run_desk(desk: Desk, scratch: Path) -> tuple[Row, list[Reply]]:
    folder = scratch / desk.name
    config = write_configuration(desk, folder)
    app = start_guichet(config, folder, scratch / "models")
    started = time.perf_counter()
    await app.start()
    try:
        start_seconds = time.perf_counter() - started
        replies = await ask_all(app, desk)
        asking_seconds = time.perf_counter() - started - start_seconds
    finally:
        await app.stop()
    articles = len(app.configuration.articles)
    row = Row(desk.name, desk.section, articles, start_seconds=start_seconds, asking_seconds=asking_seconds)
    return score(row, desk.questions, replies), replies


# --- the report --------------------------------------------------------------------------------


def share(count: int, total: int) -> str:
    return "—" if not total else f"{count / total:.1%} ({count})"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


HEADER = (
    f"{'desk':<18}{'articles':>9}{'questions':>14}{'right at once':>16}{'at once or 1 click':>20}"
    f"{'wrong at once':>15}{'oos: article':>15}{'oos: choices':>15}{'median ms':>11}{'p95 ms':>8}"
)


def line(r: Row) -> str:
    if r.error:
        return f"{r.desk:<18}  not run: {r.error}"
    asked = f"{r.in_scope} + {r.out_of_scope}"
    return (
        f"{r.desk:<18}{r.articles:>9}{asked:>14}{share(r.right, r.in_scope):>16}"
        f"{share(r.right_or_click, r.in_scope):>20}{share(r.wrong, r.in_scope):>15}"
        f"{share(r.oos_given, r.out_of_scope):>15}{share(r.oos_offered, r.out_of_scope):>15}"
        f"{ms(r.median_ms):>11}{ms(r.p95_ms):>8}"
    )


COUNTS = (
    "articles",
    "in_scope",
    "out_of_scope",
    "right",
    "right_or_click",
    "wrong",
    "oos_given",
    "oos_offered",
    "failed_requests",
)


def pooled(name: str, section: str, rows: Sequence[Row], times: Sequence[float]) -> Row:
    """The rows' questions counted together, the cost over all their messages."""
    total = Row(name, section)
    for count in COUNTS:
        setattr(total, count, sum(getattr(r, count) for r in rows))
    ordered = sorted(t * 1000 for t in times)
    if ordered:
        total.median_ms = statistics.median(ordered)
        total.p95_ms = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return total


def report(rows: Sequence[Row], times: Mapping[str, Sequence[float]]) -> list[str]:
    lines = [
        "questions: in scope + out of scope (oos); percentages of in-scope questions, the oos "
        "columns of out-of-scope ones; (count)",
    ]
    for section, title in SECTIONS.items():
        members = [r for r in rows if r.section == section]
        if not members:
            continue
        lines += ["", title, HEADER, *(line(r) for r in members)]
        ran = [r for r in members if not r.error]
        if section in ("frozen", "development") and len(ran) > 1:
            everything = [t for r in ran for t in times[r.desk]]
            lines.append(line(pooled(f"all {len(ran)} together", section, ran, everything)))
    lines.append("")
    for r in rows:
        if not r.error:
            failed = f", {r.failed_requests} requests without their replies" if r.failed_requests else ""
            asked = r.in_scope + r.out_of_scope
            lines.append(
                f"{r.desk}: Guichet started in {r.start_seconds:.1f} s; {asked} questions answered in "
                f"{r.asking_seconds:.1f} s ({asked / (r.asking_seconds or 1):.0f} a second){failed}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = (*FROZEN, *DEVELOPMENT, *PUBLIC, SAMPLE)
    parser.add_argument(
        "--desk", action="append", choices=names, help="run this desk only; may be given several times"
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--limit",
        type=int,
        default=600,
        help="in-scope questions per public set, chosen with a fixed seed; CLINC150's out-of-scope "
        "lines are capped by it too (default 600)",
    )
    parser.add_argument("--full", action="store_true", help="every test line of the public sets")
    parser.add_argument(
        "--kb-encoder",
        choices=["none", "multilingual-e5-small"],
        default="none",
        help="nlu.kb_encoder of every desk: a second encoder for the knowledge base (make .venv/.e5)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument(
        "--replies",
        type=Path,
        default=None,
        help="write each question's first reply as CSV (desk, question, expected, given, offered)",
    )
    args = parser.parse_args()
    chosen = args.desk or list(names)
    global KB_ENCODER
    KB_ENCODER = args.kb_encoder
    limit = None if args.full else args.limit
    if any(name in FROZEN for name in chosen):
        problems = frozen_problems()
        if problems:
            print(
                "The frozen desks of bench/desks do not match FROZEN.sha256: they must stay as "
                "they were written (see bench/desks/README.md; write a new desk instead):",
                *(f"  {p}" for p in problems),
                sep="\n",
                file=sys.stderr,
            )
            return 2
    if any(name in PUBLIC for name in chosen) and not (args.data / "clinc150").is_dir():
        print(f"no public data in {args.data} (see ../shared/data/README.md): pass --data", file=sys.stderr)
        return 2

    began = time.perf_counter()
    rows: list[Row] = []
    times: dict[str, list[float]] = {}
    answered: dict[str, list[tuple[Question, Reply]]] = {}
    with tempfile.TemporaryDirectory(prefix="guichet-bench-kb-") as scratch:
        for name in chosen:
            section = (
                "frozen"
                if name in FROZEN
                else "development"
                if name in DEVELOPMENT
                else "public"
                if name in PUBLIC
                else "sample"
            )
            try:
                desk = build(name, args.data, limit)
                row, replies = asyncio.run(run_desk(desk, Path(scratch)))
            except DeskError as exc:
                print(f"{name}: not run: {exc}", file=sys.stderr)
                rows.append(Row(name, section, error=str(exc)))
                continue
            rows.append(row)
            times[name] = [r.seconds for r in replies]
            answered[name] = list(zip(desk.questions, replies, strict=True))
    seconds = time.perf_counter() - began
    encoder = load_configuration(ROOT / "config", environ={}).settings.nlu.encoder
    print()
    print(
        f"Knowledge-base answering, first reply over REST, {CONCURRENCY} conversations at a time; "
        f"sentence encoder {encoder} (config/guichet.yml), knowledge-base encoder {KB_ENCODER}; public sets: "
        f"{'every test line' if limit is None else f'{limit} questions, seed {SEED}'}"
    )
    for text in report(rows, times):
        print(text)
    print(f"{len(rows)} desks in {seconds:.0f} s (load {os.getloadavg()[0]:.1f} at the end)")
    if args.replies:
        with args.replies.open("w", encoding="utf-8", newline="") as file:
            out = csv.writer(file)
            out.writerow(["desk", "question", "expected", "given", "offered"])
            for name, pairs in answered.items():
                for question, reply in pairs:
                    given = reply.given or ("(failed)" if reply.failed else "")
                    out.writerow(
                        [name, question.text, question.article or "", given, " ".join(reply.offered)]
                    )
    if args.json:
        figures = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "limit": limit,
            "concurrency": CONCURRENCY,
            "encoder": encoder,
            "kb_encoder": KB_ENCODER,
            "seconds": seconds,
            "desks": [dataclasses.asdict(r) for r in rows],
        }
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
