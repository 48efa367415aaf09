"""The `guichet` command. The only place that exits the process with a status."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from bot.config import check_configuration, default_config_dir
from bot.errors import GuichetError


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

    check = commands.add_parser("check", help="validate a configuration directory and print every problem")
    check.add_argument(
        "--config", type=Path, default=None, help="configuration directory (default: ./config)"
    )

    args = parser.parse_args(argv)
    config_dir: Path = args.config or default_config_dir()
    if args.command == "check":
        sys.exit(_check(config_dir))
    sys.exit(_run(config_dir, args.host, args.port, args.log_level))


def _check(config_dir: Path) -> int:
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
    return 0


def _run(config_dir: Path, host: str | None, port: int | None, log_level: str) -> int:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
