"""``python -m demo`` (what ``make demo`` runs): bxsync against the sandbox portals, with simulated activity.

A development tool, not part of what ``make run`` ships: it starts the two emulated portals of
``bitrix_sandbox`` in this process, seeds them, links the sample pairs with a first reconciliation, and
runs the web server and every worker against them until Ctrl+C. It configures Django itself (the
``bxsync_project`` settings, like ``manage.py``), so the production app never has to know about the sandbox.
Apply the migrations first (``make demo`` does).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from pathlib import Path

import django

LOG_NAME = "demo.log"


def build_parser() -> argparse.ArgumentParser:
    """The demo's options; ports default to ``PORT``, ``SANDBOX_SHOP_PORT`` and ``SANDBOX_CRM_PORT``."""
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Start sandbox portals with sample orders and deals, live activity, the web server and "
        "all workers.",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--orders", type=int, default=40, help="sample orders (each with a deal)")
    parser.add_argument("--activity", type=float, default=0.5, help="simulated human changes per second")
    parser.add_argument("--shop-port", type=int, default=int(os.environ.get("SANDBOX_SHOP_PORT", "8101")))
    parser.add_argument("--crm-port", type=int, default=int(os.environ.get("SANDBOX_CRM_PORT", "8102")))
    return parser


def run(*, port: int, orders: int, activity: float, shop_port: int, crm_port: int) -> int:
    """Run the demo until Ctrl+C/SIGTERM; returns the exit code of the services."""
    # Imported after django.setup(): these touch settings and models at import time.
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils.translation import gettext

    from bitrix_sandbox import CrmConfig, Sandbox, SandboxConfig, ShopConfig
    from demo.summary import LivePrinter, reconcile_line
    from statussync.doctor import doctor_run
    from statussync.mapping.store import mapping_import
    from statussync.models import Link, LinkState
    from statussync.reconcile import reconcile_run
    from statussync.runner import services_run
    from statussync.schedules import schedules_ensure

    demo_mapping = Path(settings.BASE_DIR) / "docs" / "mapping.demo.json"
    log_file = Path(settings.BASE_DIR) / LOG_NAME
    _log_to(log_file)
    web = f"http://127.0.0.1:{port}"
    sandbox = Sandbox(
        SandboxConfig(
            seed=secrets.randbelow(10_000),
            shop=ShopConfig(port=shop_port, handler_url=f"{web}/api/bitrix/cms/"),
            # No outgoing webhook: the CRM is connected as an application and bxsync pulls its queue.
            crm=CrmConfig(port=crm_port),
        )
    ).start()
    try:
        # The CRM as a Bitrix24 application in pull mode (its webhook URL left empty); the shop by webhooks.
        portal_env = {**sandbox.env(), "BXSYNC_CRM_REST_URL": "", "BXSYNC_CRM_APP_TOKEN": ""}
        # This process links the sample pairs below; the children get the same settings by environment.
        for name, value in portal_env.items():
            setattr(settings, name, value)
        _crm_connect(sandbox, web)
        mapping_import(data=json.loads(demo_mapping.read_text()))
        pairs = sandbox.seed(orders, emit_events=False)
        password = secrets.token_urlsafe(9)
        admin, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"email": "admin@example.com"}
        )
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        schedules_ensure()
        print(gettext("Linking the sample orders and deals (a first reconciliation)…"), flush=True)
        report = reconcile_run(process_inline=True)
        linked = Link.objects.filter(state=LinkState.ACTIVE).count()
        print(f"  {reconcile_line(report.counts(), linked=linked)}", flush=True)
        # The same check a user connecting real portals runs first (manage.py bitrix doctor), in one line.
        print(f"  {doctor_run(base_url=web).summary()}", flush=True)
        sandbox.start_traffic(rate=activity)
        print(
            gettext(
                "\nThe CRM is connected as a Bitrix24 application in pull mode: bxsync reads its "
                "offline-event queue,\nso nothing is lost while bxsync is down. See Connected portals in the "
                "admin."
            ),
            flush=True,
        )
        print(
            gettext(
                "\nbxsync demo is running.\n"
                "  Admin:     %(web)s/admin/   login: admin   password: %(password)s\n"
                "  Try:       type an order id (%(order)s, say) in the admin's search box: its\n"
                "             timeline says why it is in its status. The Dashboard is beside it.\n"
                "  Health:    %(web)s/api/health/\n"
                "  Sandboxes: shop %(shop)s/_sandbox/state · CRM %(crm)s/_sandbox/state\n"
                "  Logs:      %(log)s (web server and workers)\n"
                "  Simulated managers, customers and staff make %(activity)s changes a second. "
                "Ctrl+C stops.\n"
            )
            % {
                "web": web,
                "password": password,
                "order": pairs[0][0],
                "shop": f"http://127.0.0.1:{sandbox.shop.port}",
                "crm": f"http://127.0.0.1:{sandbox.crm.port}",
                "log": log_file,
                "activity": f"{activity:g}",
            },
            flush=True,
        )
        extra_env = {
            **portal_env,
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(40),
            "DEBUG": os.environ.get("DEBUG", "false"),
            # The demo serves plain HTTP on 127.0.0.1: secure-only cookies would break its admin login.
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            # Show what bxsync says on a deal when it blocks or overrides a change there
            # (the sandbox's /_sandbox/comments/<deal id>).
            "BXSYNC_CRM_COMMENTS": os.environ.get("BXSYNC_CRM_COMMENTS", "true"),
        }
        live = LivePrinter()
        try:
            return services_run(
                host="127.0.0.1", port=port, extra_env=extra_env, log_file=log_file, on_tick=live.tick
            )
        finally:
            live.close()
    finally:
        sandbox.stop_traffic()
        sandbox.stop()


def _crm_connect(sandbox, web: str) -> None:
    """Connect the sandbox CRM as an application, as a manager's Connect in the admin would: the sign-in on
    the portal (its own authorization server here) and back with the code."""
    from urllib.parse import parse_qs, urlsplit

    import requests

    from statussync.applications import application_connect_finish, application_connect_start

    app = sandbox.crm.app
    app.configure(redirect_uri=f"{web}/admin/statussync/connectedportal/connect/done/")
    sign_in = application_connect_start(
        portal="crm",
        address=sandbox.crm.base_url,
        client_id=app.client_id,
        client_secret=app.client_secret,
        oauth_server=sandbox.crm.base_url,
    )
    back = requests.get(sign_in, allow_redirects=False, timeout=10).headers["Location"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(back).query).items()}
    application_connect_finish(state=query["state"], code=query["code"])


def _log_to(path: Path) -> None:
    """This process's own logs go to the demo's log file, where the web server's and workers' go; only a
    warning or worse still reaches the console (a service that stops, say)."""
    path.write_text("")  # a fresh log for each demo, like its database
    to_file = logging.FileHandler(path, mode="a", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # The root logger, and django-q's, which has a console handler of its own and does not propagate.
    for logger in (logging.getLogger(), logging.getLogger("django-q")):
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
        logger.addHandler(to_file)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse the options, set Django up as ``manage.py`` does, run."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bxsync_project.settings")
    django.setup()
    return run(
        port=args.port,
        orders=args.orders,
        activity=args.activity,
        shop_port=args.shop_port,
        crm_port=args.crm_port,
    )


if __name__ == "__main__":
    sys.exit(main())
