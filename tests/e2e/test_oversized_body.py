"""Issue 14: a sender of an oversized webhook body reads its 413, as the contract promises, rather than a
connection reset — against the web server as `manage.py serve` runs it, from a raw socket that writes the
whole body before it reads the answer (as Bitrix's queue and most HTTP clients do)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from statussync.runner import service_commands
from tests.e2e.stack import ROOT, free_port
from tests.support.waiting import wait_for

BODY_BYTES = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def web_server(tmp_path_factory) -> Iterator[str]:
    """The web server alone, with the arguments `manage.py serve` gives it; the 413 needs no database row."""
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("oversized")
    argv, own_env = service_commands(host="127.0.0.1", port=port)["web"]
    env = {
        **os.environ,
        **own_env,
        "SECRET_KEY": "oversized-body-test-not-for-production-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "REDIS_URL": "",
        "BXSYNC_CRM_APP_TOKEN": "oversized-body-test-token",
        "BXSYNC_CMS_APP_TOKEN": "oversized-body-test-token-cms",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir),
    }
    env.pop("BXSYNC_TEST_DB", None)
    with (workdir / "web.log").open("a") as log:
        server = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert server.poll() is None, (workdir / "web.log").read_text()[-3000:]
        try:
            return requests.get(f"{url}/api/bitrix/crm/", timeout=2).status_code == 405
        except requests.RequestException:
            return False

    try:
        wait_for(answering, timeout=60, what="the web server to answer")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def send_oversized(url: str) -> bytes:
    """POST a 3 MB form body from a raw socket: every byte written first, then the answer read."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        "POST /api/bitrix/crm/ HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {BODY_BYTES}\r\nConnection: close\r\n\r\n"
    ).encode()
    chunk = b"event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=1&x=" + b"a" * 65_000
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as sender:
        sender.sendall(head)
        sent = 0
        while sent < BODY_BYTES:
            piece = chunk[: BODY_BYTES - sent]
            sender.sendall(piece)
            sent += len(piece)
        while data := sender.recv(65536):
            answer += data
    return answer


def test_it_answers_413_to_a_sender_still_writing_an_oversized_body(web_server):
    answers = []
    for _ in range(10):
        try:
            answer = send_oversized(web_server)
        except ConnectionError as exc:
            answer = type(exc).__name__.encode()
        # The status code is the contract; the reason phrase is the server's own wording.
        answers.append(answer.split(b"\r\n", 1)[0][:12])

    assert answers == [b"HTTP/1.1 413"] * 10
