"""``python -m agora_emulator``: serve the emulated Agora REST API and send NCS callbacks (see ``--help``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from agora_emulator.app import Config, Emulator
from agora_emulator.faults import FaultError, parse_cli_fault


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``contract.md`` plus time, seed and fault switches."""
    parser = argparse.ArgumentParser(prog="python -m agora_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--notify-url", help="where NCS callbacks are posted (none: callbacks are only recorded)"
    )
    parser.add_argument("--ncs-secret", default="emulator-ncs-secret", help="signs the callbacks")
    parser.add_argument("--app-id", default="emulator-app-id")
    parser.add_argument("--customer-id", default="emulator-customer-id")
    parser.add_argument("--customer-secret", default="emulator-customer-secret")
    parser.add_argument(
        "--seed", type=int, default=None, help="makes ids and fault draws repeatable (default: random)"
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="real seconds per emulated second (0.1 = 10x faster)"
    )
    parser.add_argument(
        "--rate-limit", type=int, default=10, help="requests per second per App ID before 429 (0 = off)"
    )
    parser.add_argument(
        "--default-publishers", type=int, default=2, help="publishing hosts in channels never configured"
    )
    parser.add_argument(
        "--ncs-timeout", type=float, default=10.0, help="seconds the receiver has to answer 200"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:K=V,...",
        help="switch a fault on, e.g. 'ncs:duplicate=0.3,reorder=2' or 'answer:endpoint=start,status=500,times=2'",
    )
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
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
    config = Config(
        app_id=args.app_id,
        customer_id=args.customer_id,
        customer_secret=args.customer_secret,
        notify_url=args.notify_url,
        ncs_secret=args.ncs_secret,
        seed=args.seed,
        time_scale=args.time_scale,
        rate_limit=args.rate_limit,
        default_publishers=args.default_publishers,
        ncs_timeout=args.ncs_timeout,
        faults=faults,
    )
    emulator = Emulator(config)
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
