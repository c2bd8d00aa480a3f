"""``python -m agora_emulator``: serve the emulated Agora REST API and send NCS callbacks (see ``--help``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from agora_emulator.app import Config, Emulator
from agora_emulator.faults import FaultError, parse_cli_fault

#: Each Config field settable from the command line: (flag, type, help). Defaults come from Config itself.
OPTIONS: dict[str, tuple[type, str]] = {
    "notify_url": (str, "where NCS callbacks are posted (none: callbacks are only recorded)"),
    "ncs_secret": (str, "signs the callbacks"),
    "app_id": (str, "the App ID in REST paths"),
    "customer_id": (str, "Basic-auth user"),
    "customer_secret": (str, "Basic-auth password"),
    "seed": (int, "makes ids and fault draws repeatable (default: random)"),
    "time_scale": (float, "real seconds per emulated second (0.1 = 10x faster)"),
    "rate_limit": (int, "requests per second per App ID before 429 (0 = off)"),
    "default_publishers": (int, "publishing hosts in channels never configured"),
    "ncs_timeout": (float, "seconds the receiver has to answer 200"),
    "max_recorders": (int, "concurrent individual/mix recorders before acquire answers 406 (0 = no limit)"),
    "max_web_recorders": (int, "concurrent web page recorders before acquire answers 406 (0 = no limit)"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``docs/contract.md`` §9 plus time, seed and fault switches."""
    parser = argparse.ArgumentParser(prog="python -m agora_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    defaults = Config()
    for name, (kind, help_text) in OPTIONS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name), help=help_text
        )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:K=V,...",
        help="switch a fault on, e.g. 'ncs:duplicate=0.3,reorder=2' or 'answer:endpoint=start,status=500,times=2' or 'slow:endpoint=start,delay=15,times=1'",
    )
    return parser.parse_args(argv)


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    args = parse_args(argv)
    try:
        faults = [parse_cli_fault(text) for text in args.fault]
    except FaultError as exc:
        print(f"--fault: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="emulator %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config = Config(faults=faults, **{name: getattr(args, name) for name in OPTIONS})
    try:
        emulator = Emulator(config)
    except ValueError as exc:
        print(f"agora emulator: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    print(
        f"agora emulator on http://{args.host}:{args.port} (app id {args.app_id}), callbacks to {args.notify_url}",
        flush=True,
    )
    try:
        emulator.serve_forever(args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
