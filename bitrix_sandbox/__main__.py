"""CLI: ``python -m bitrix_sandbox serve [...]`` runs both portals until SIGINT/SIGTERM.

On start it prints the bxsync environment (``BXSYNC_CMS_REST_URL=...`` etc.) on stdout, one ``KEY=value``
per line, so a Makefile can capture it; ``--env-file`` writes the same lines to a file. Progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .crm import CrmConfig
from .harness import Sandbox, SandboxConfig
from .shop import ShopConfig


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``serve`` is the only command)."""
    parser = argparse.ArgumentParser(prog="python -m bitrix_sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the shop and CRM portals")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--shop-port", type=int, default=8101)
    serve.add_argument("--crm-port", type=int, default=8102)
    serve.add_argument("--shop-handler", help="URL the shop posts its events to")
    serve.add_argument("--crm-handler", help="URL the CRM posts its events to")
    serve.add_argument(
        "--shop-token", default="", help="shop application_token (default: generated from --seed)"
    )
    serve.add_argument(
        "--crm-token", default="", help="CRM application_token (default: generated from --seed)"
    )
    serve.add_argument("--shop-code", default="", help="shop webhook code (default: generated)")
    serve.add_argument("--crm-code", default="", help="CRM webhook code (default: generated)")
    serve.add_argument("--user-id", type=int, default=1, help="webhook user id on both portals")
    serve.add_argument("--order-field", default="UF_CRM_ORDER_ID")
    serve.add_argument("--status-on-paid", default="P", help="auto status on payment, or 'none'")
    serve.add_argument("--rate", type=float, default=2.0, help="leaky bucket drain per second (0 = no limit)")
    serve.add_argument("--burst", type=int, default=50, help="leaky bucket size")
    serve.add_argument(
        "--one-portal",
        action="store_true",
        help="one Bitrix24 for both roles: the CRM's webhook on the shop's address, one leaky bucket",
    )
    serve.add_argument(
        "--seed", type=int, default=0, help="RNG seed for codes, tokens, faults, data, traffic"
    )
    serve.add_argument("--seed-orders", type=int, default=0, help="create N linked orders/deals at start")
    serve.add_argument("--traffic", action="store_true", help="simulate human activity")
    serve.add_argument("--traffic-rate", type=float, default=0.5, help="traffic actions per second")
    serve.add_argument("--env-file", type=Path, help="also write the BXSYNC_* lines to this file")
    return parser


def make_sandbox(args: argparse.Namespace) -> Sandbox:
    """Build (not start) a Sandbox from parsed ``serve`` arguments."""
    common = {
        "host": args.host,
        "user_id": args.user_id,
        "rate": args.rate,
        "burst": args.burst,
    }
    status_on_paid = None if args.status_on_paid.lower() in ("", "none", "null") else args.status_on_paid
    shop = ShopConfig(
        port=args.shop_port,
        webhook_code=args.shop_code,
        application_token=args.shop_token,
        handler_url=args.shop_handler,
        status_on_paid=status_on_paid,
        **common,
    )
    crm = CrmConfig(
        port=args.crm_port,
        webhook_code=args.crm_code,
        application_token=args.crm_token,
        handler_url=args.crm_handler,
        order_field=args.order_field,
        **common,
    )
    return Sandbox(SandboxConfig(shop=shop, crm=crm, seed=args.seed, one_portal=args.one_portal))


def serve(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sandbox = make_sandbox(args).start()
    try:
        if args.seed_orders:
            pairs = sandbox.seed(args.seed_orders)
            print(f"sandbox: seeded {len(pairs)} linked orders/deals", file=sys.stderr)
        lines = [f"{key}={value}" for key, value in sandbox.env().items()]
        print("\n".join(lines), flush=True)
        if args.env_file:
            args.env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(
            f"sandbox: shop {sandbox.shop.base_url}  crm {sandbox.crm.base_url}  "
            f"(control API under /_sandbox/, Ctrl+C to stop)",
            file=sys.stderr,
            flush=True,
        )
        if args.traffic:
            sandbox.start_traffic(rate=args.traffic_rate)
        stop.wait()
    finally:
        sandbox.stop()
    print("sandbox: stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
