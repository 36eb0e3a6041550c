"""The ``tickwork`` command line (also ``python -m tickwork``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickwork", description="tickwork task scheduler")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    try:
        from . import _cron_cli
    except ImportError:  # pragma: no cover - the cron CLI module is always shipped
        pass
    else:
        _cron_cli.add_parser(sub)
    demo = sub.add_parser("demo", help="run the bundled example (Ctrl-C stops gracefully)")
    demo.add_argument("--console", action="store_true",
                      help="plain console demo without the web service")
    demo.add_argument("--seconds", type=float, default=None,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    try:
        from .service import cli as service_cli
    except ImportError:
        service_cli = None  # type: ignore[assignment]
    if service_cli is not None:
        service_cli.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "cron":
        from . import _cron_cli

        return _cron_cli.run(args)
    if args.command == "demo" and (args.console or not _service_available()):
        from ._demo import console_demo

        return console_demo(args.seconds)
    from .service import cli as service_cli

    return service_cli.run(args)


def _service_available() -> bool:
    try:
        from .service import cli  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
