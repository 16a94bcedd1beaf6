"""``python -m bitrix_sandbox serve``: both portals from the command line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_it_serves_from_the_command_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bitrix_sandbox",
            "serve",
            "--shop-port",
            "0",
            "--crm-port",
            "0",
            "--crm-token",
            "crmtoken",
            "--seed-orders",
            "3",
            "--env-file",
            str(env_file),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(5))
        assert env["BXSYNC_CRM_APP_TOKEN"] == "crmtoken"
        response = requests.post(f"{env['BXSYNC_CRM_REST_URL']}crm.deal.list.json", json={}, timeout=5)
        assert response.json()["total"] == 6  # 3 linked + 3 without an order
        assert env_file.read_text().splitlines()[0].startswith("BXSYNC_CMS_REST_URL=http://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_it_serves_both_roles_on_one_portal_from_the_command_line() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bitrix_sandbox",
            "serve",
            "--shop-port",
            "0",
            "--crm-port",
            "0",
            "--one-portal",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(5))
        shop, crm = env["BXSYNC_CMS_REST_URL"], env["BXSYNC_CRM_REST_URL"]
        assert shop.split("/rest/")[0] == crm.split("/rest/")[0]  # one address
        assert requests.post(f"{crm}crm.deal.list.json", json={}, timeout=5).status_code == 200
        assert requests.post(f"{shop}sale.order.list.json", json={}, timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
