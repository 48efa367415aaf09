"""The `guichet` command. The only place that exits the process with a status."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bot.config import Configuration, check_configuration, default_config_dir
from bot.errors import GuichetError
from bot.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="guichet", description="The front door of a help desk.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run every configured channel in one process")
    run.add_argument("--config", type=Path, default=None, help="configuration directory (default: ./config)")
    run.add_argument(
        "--host", default=None, help="HTTP address to listen on (default from guichet.yml: 127.0.0.1)"
    )
    run.add_argument("--port", type=int, default=None, help="HTTP port (default from guichet.yml: 8080)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--log-format",
        default=os.environ.get("GUICHET_LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="json: one object per line, with conversation and ticket ids (default: $GUICHET_LOG_FORMAT or text)",
    )

    check = commands.add_parser(
        "check",
        help="validate a configuration directory and print every problem; estimate how well its "
        "knowledge base will be answered",
    )
    check.add_argument(
        "--config", type=Path, default=None, help="configuration directory (default: ./config)"
    )
    check.add_argument(
        "--no-estimate",
        action="store_true",
        help="validate only: skip the knowledge base's estimate (it asks each article's questions "
        "of the others, seconds to a minute)",
    )

    nlu = commands.add_parser("nlu", help="the built-in NLU engine: train, evaluate, try")
    nlu_commands = nlu.add_subparsers(dest="nlu_command", required=True)
    nlu_train = nlu_commands.add_parser(
        "train", help="train the intent model of the configuration's nlu/ files"
    )
    nlu_train.add_argument("--force", action="store_true", help="train even if this data was trained before")
    nlu_eval = nlu_commands.add_parser(
        "evaluate", help="accuracy, macro F1, out-of-scope recall/precision, confusions; JSON report and PNG"
    )
    nlu_eval.add_argument(
        "--data",
        type=Path,
        default=None,
        help="test examples: Rasa NLU YAML, CSV (text,intent) or CLINC150's JSON "
        "(default: a held-out fifth of the configuration's own examples)",
    )
    nlu_eval.add_argument("--engine", choices=["builtin", "rasa"], default="builtin")
    nlu_eval.add_argument("--out", type=Path, default=Path("nlu-report"), help="where the report goes")
    nlu_shell = nlu_commands.add_parser("shell", help="type messages and see how they are understood")
    nlu_shell.add_argument("--engine", choices=["builtin", "rasa"], default="builtin")
    for sub in (nlu_train, nlu_eval, nlu_shell):
        sub.add_argument(
            "--config", type=Path, default=None, help="configuration directory (default: ./config)"
        )

    triage = commands.add_parser("triage", help="categories learnt from the desk's ticket history")
    triage_commands = triage.add_subparsers(dest="triage_command", required=True)
    triage_train = triage_commands.add_parser(
        "train", help="train a category model on past tickets (CSV with the header text,category)"
    )
    triage_train.add_argument("data", type=Path, help="the ticket history: CSV with the header text,category")
    triage_train.add_argument(
        "--out", type=Path, default=None, help="where the model goes (default: CONFIG/models/categories)"
    )
    triage_train.add_argument(
        "--fine-tune",
        action="store_true",
        help="also fine-tune all-MiniLM-L6-v2 on the tickets (English; PyTorch needed; about 25 min for 30,000)",
    )
    triage_train.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default: 2)")
    triage_train.add_argument(
        "--config", type=Path, default=None, help="configuration directory (default: ./config)"
    )

    handoff = commands.add_parser("handoff", help="level-2 queues and handoffs that could not be delivered")
    handoff_commands = handoff.add_subparsers(dest="handoff_command", required=True)
    dead = handoff_commands.add_parser("dead-letters", help="list (and replay) handoffs that kept failing")
    dead.add_argument("--replay", action="append", default=[], metavar="ID", help="send this one again")
    dead.add_argument("--replay-all", action="store_true", help="send every dead letter again")
    queues = handoff_commands.add_parser("queues", help="the level-2 queues and their signing secrets")
    for sub in (dead, queues):
        sub.add_argument(
            "--config", type=Path, default=None, help="configuration directory (default: ./config)"
        )

    stats = commands.add_parser("stats", help="print the link of the statistics page of the running Guichet")
    report = commands.add_parser("report", help="reports for the help-desk manager")
    report_commands = report.add_subparsers(dest="report_command", required=True)
    unanswered = report_commands.add_parser(
        "unanswered",
        help="group the questions nobody could answer and write draft articles for the frequent ones",
    )
    unanswered.add_argument("--days", type=int, default=30, help="how far back (default: 30 days)")
    unanswered.add_argument("--top", type=int, default=10, help="draft articles for this many groups")
    unanswered.add_argument(
        "--out", type=Path, default=Path("kb-drafts"), help="where the drafts go (default: ./kb-drafts)"
    )
    forget = commands.add_parser("forget", help="erase a person's data everywhere and print what was removed")
    forget.add_argument("person", help="an email address, or a channel id such as telegram:12345")
    forget.add_argument("--yes", action="store_true", help="do it without asking")
    export = commands.add_parser("export", help="everything Guichet holds about a person, as JSON")
    export.add_argument("person", help="an email address, or a channel id such as telegram:12345")
    export.add_argument("--out", type=Path, default=None, help="write it to this file (default: print it)")
    for sub in (stats, unanswered, forget, export):
        sub.add_argument(
            "--config", type=Path, default=None, help="configuration directory (default: ./config)"
        )

    args = parser.parse_args(argv)
    config_dir: Path = args.config or default_config_dir()
    if args.command == "check":
        sys.exit(_check(config_dir, estimate=not args.no_estimate))
    if args.command == "nlu":
        sys.exit(_nlu(args, config_dir))
    if args.command == "handoff":
        sys.exit(_handoff(args, config_dir))
    if args.command == "triage":
        sys.exit(_triage(args, config_dir))
    if args.command in ("stats", "report", "forget", "export"):
        sys.exit(_report(args, config_dir))
    sys.exit(_run(config_dir, args.host, args.port, args.log_level, args.log_format))


def _check(config_dir: Path, *, estimate: bool = True) -> int:
    configuration, problems = check_configuration(config_dir)
    if problems:
        print(f"{len(problems)} problem(s) in {config_dir}:\n", file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    assert configuration is not None
    languages = sorted({a.language for a in configuration.articles})
    counts = ", ".join(
        f"{sum(1 for a in configuration.articles if a.language == lang)} {lang}" for lang in languages
    )
    print(
        f"{config_dir}: OK — {len(configuration.articles)} articles ({counts or 'none'}), "
        f"{len(configuration.training.intents)} intents, store: {configuration.settings.store.kind}"
    )
    if (
        configuration.articles
        and len(configuration.training.intents) < 2
        and configuration.settings.nlu.encoder == "none"
    ):
        print(
            "Hint: with no intents in nlu/, an article is found by the words of its questions only. "
            "Set nlu.encoder: use-multilingual-3 and it is found by meaning too (on the sample's "
            "held-out requests: the right article at once for 89% of them instead of 37%)."
        )
    if estimate and configuration.articles:
        _kb_estimate(configuration)
    return 0


def _kb_estimate(configuration: Configuration) -> None:
    """How well this knowledge base will be answered, from its own articles (nlu/kb_check.py)."""
    from bot.progress import Progress
    from nlu.kb_check import MIN_QUESTIONS, estimate

    settings = configuration.settings
    answering = settings.answering
    encoder = None
    if settings.nlu.encoder != "none":
        from nlu.encoder import shared

        encoder = shared(settings.nlu.encoder)
    progress = Progress("knowledge base: estimate", 3)
    found = estimate(
        configuration.articles,
        encoder,
        answer_threshold=answering.answer_threshold,
        suggest_threshold=answering.suggest_threshold,
        close_margin=answering.close_margin,
        max_suggestions=answering.max_suggestions,
        progress=progress.update,
    )
    progress.close()
    if not found.asked:
        print("Knowledge base: too few articles or questions to estimate anything.")
    else:
        print(
            f"Knowledge base, each article's questions asked of the others ({found.asked} questions): "
            f"{found.share_right:.0%} answered at once and right, {found.share_wrong:.0%} at once with "
            f"another article, {found.share_reached:.0%} at once or among the choices. People's own "
            "words are looser than an article's questions: expect about 15 points fewer answered at "
            "once (nlu/kb_check.py)."
        )
    for article, other, count in found.collisions[:10]:
        print(f"  collision: {count} question(s) of '{article}' taken for '{other}' (overlap? add questions)")
    for article in found.never_found:
        print(f"  not found again: none of the questions of '{article}' finds it: add ways people ask it")
    for article in found.too_few:
        print(f"  too few questions: '{article}' has fewer than {MIN_QUESTIONS} (write 3 to 5)")


def _report(args: argparse.Namespace, config_dir: Path) -> int:
    from bot import report_cli

    settings, problems = load_settings(config_dir)
    if settings is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    if args.command == "stats":
        return report_cli.stats_command(settings)
    if args.command == "export":
        return report_cli.privacy_command(settings, args.person, erase=False, out=args.out)
    if args.command == "forget":
        if not args.yes:
            answer = input(f"Erase every conversation and anonymise every ticket of {args.person}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes", "o", "oui"):
                print("Nothing erased.")
                return 1
        return report_cli.privacy_command(settings, args.person, erase=True, out=None)
    return report_cli.unanswered_command(settings, args.days, args.out, args.top)


def _nlu(args: argparse.Namespace, config_dir: Path) -> int:
    from bot import nlu_cli

    try:
        if args.nlu_command == "train":
            return nlu_cli.train(config_dir, args.force)
        if args.nlu_command == "evaluate":
            return nlu_cli.evaluate(config_dir, args.data, args.engine, args.out)
        return nlu_cli.shell(config_dir, args.engine)
    except GuichetError as exc:
        print(f"guichet nlu: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"guichet nlu: {exc}", file=sys.stderr)
        return 2


def _triage(args: argparse.Namespace, config_dir: Path) -> int:
    from bot import triage_cli
    from nlu.finetune import FineTuneUnavailable

    try:
        return triage_cli.train(config_dir, args.data, args.out, args.fine_tune, args.epochs)
    except (FineTuneUnavailable, OSError, ValueError) as exc:  # HistoryError is a ValueError
        print(f"guichet triage: {exc}", file=sys.stderr)
        return 2


def _handoff(args: argparse.Namespace, config_dir: Path) -> int:
    from bot import handoff_cli

    try:
        if args.handoff_command == "queues":
            return handoff_cli.queues(config_dir)
        return handoff_cli.dead_letters(config_dir, args.replay, args.replay_all)
    except GuichetError as exc:
        print(f"guichet handoff: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"guichet handoff: cannot reach the running Guichet: {exc}", file=sys.stderr)
        return 2


def _run(config_dir: Path, host: str | None, port: int | None, log_level: str, log_format: str) -> int:
    from bot.logs import configure

    configure(log_level, log_format)
    if host is not None:
        os.environ["GUICHET_HTTP_HOST"] = host
    if port is not None:
        os.environ["GUICHET_HTTP_PORT"] = str(port)
    configuration, problems = check_configuration(config_dir)
    if configuration is None:
        print(f"Guichet cannot start: {len(problems)} problem(s) in {config_dir}:\n", file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    import uvloop

    from bot.app import Guichet

    try:
        uvloop.run(Guichet(configuration).run_until_signalled())
    except GuichetError as exc:
        print(f"Guichet cannot start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"Guichet cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    main()
