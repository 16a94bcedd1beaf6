"""`manage.py demo` (what `make demo` runs): bxsync against the sandbox portals, with simulated activity."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from bitrix_sandbox import CrmConfig, Sandbox, SandboxConfig, ShopConfig
from statussync.mapping import mapping_import
from statussync.reconcile import reconcile_run
from statussync.runner import services_run
from statussync.schedules import schedules_ensure

DEMO_MAPPING = Path(settings.BASE_DIR) / "docs" / "mapping.demo.json"


class Command(BaseCommand):
    help = (
        "Start sandbox portals with sample orders and deals, live activity, the web server and all workers."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--orders", type=int, default=40, help="sample orders (each with a deal)")
        parser.add_argument("--activity", type=float, default=0.5, help="simulated human changes per second")
        parser.add_argument("--shop-port", type=int, default=int(os.environ.get("SANDBOX_SHOP_PORT", "8101")))
        parser.add_argument("--crm-port", type=int, default=int(os.environ.get("SANDBOX_CRM_PORT", "8102")))

    def handle(
        self, *args, port: int, orders: int, activity: float, shop_port: int, crm_port: int, **options
    ):
        web = f"http://127.0.0.1:{port}"
        sandbox = Sandbox(
            SandboxConfig(
                seed=secrets.randbelow(10_000),
                shop=ShopConfig(port=shop_port, handler_url=f"{web}/api/bitrix/cms/"),
                crm=CrmConfig(port=crm_port, handler_url=f"{web}/api/bitrix/crm/"),
            )
        ).start()
        try:
            portal_env = sandbox.env()
            # This process links the sample pairs below; the children get the same settings by environment.
            for name, value in portal_env.items():
                setattr(settings, name, value)
            mapping_import(data=json.loads(DEMO_MAPPING.read_text()))
            sandbox.seed(orders, emit_events=False)
            password = secrets.token_urlsafe(9)
            user_model = get_user_model()
            admin, _ = user_model.objects.get_or_create(
                username="admin", defaults={"email": "admin@example.com"}
            )
            admin.is_staff = admin.is_superuser = True
            admin.set_password(password)
            admin.save()
            schedules_ensure()
            self.stdout.write("Linking the sample orders and deals (a first reconciliation)…")
            report = reconcile_run(process_inline=True)
            self.stdout.write(f"  {report.counts()}")
            sandbox.start_traffic(rate=activity)
            self.stdout.write(
                self.style.SUCCESS(
                    f"\nbxsync demo is running.\n"
                    f"  Admin:  {web}/admin/   login: admin   password: {password}\n"
                    f"  Health: {web}/api/health/\n"
                    f"  Sandbox shop: http://127.0.0.1:{sandbox.shop.port}/_sandbox/state  "
                    f"CRM: http://127.0.0.1:{sandbox.crm.port}/_sandbox/state\n"
                    f"  Simulated managers, customers and staff make {activity} change(s)/s. Ctrl+C stops.\n"
                )
            )
            extra_env = {
                **portal_env,
                "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(40),
                "DEBUG": os.environ.get("DEBUG", "false"),
            }
            code = services_run(host="127.0.0.1", port=port, extra_env=extra_env)
        finally:
            sandbox.stop_traffic()
            sandbox.stop()
        raise SystemExit(code)
