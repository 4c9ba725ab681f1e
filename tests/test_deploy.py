"""deploy/ (issue 14): real Debian nginx, with the site's own proxy.conf, in front of the real web
process delivers signed webhooks and holds slow clients; the Caddyfile is valid for Debian's
caddy; the systemd units run the Procfile's lines."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time

import pytest

from bench.slowloris import SlowClients
from tests.audit_support import ROOT
from tests.fault_support import free_port, get, participant_body, post_signed, procfile_line, start_web, stored_hashes

DEPLOY = ROOT / "deploy"

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream attendance_web {{ server 127.0.0.1:{web_port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        include {proxy_conf};
    }}
}}
"""


@pytest.fixture
def nginx_in_front(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(nginx), "nginx is needed (apt-get install nginx): .ci/run installs it"
    web = start_web(tmp_path / "deploy.db", WEB_CONCURRENCY="1")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=tmp_path,
            port=port,
            web_port=web.port,
            proxy_conf=DEPLOY / "nginx" / "proxy.conf",
            # Run as root, nginx's workers would become `nobody`, who cannot read pytest's tmp.
            user="user root;" if os.geteuid() == 0 else "",
        )
    )
    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # its error_log is a file in tmp_path
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.1)
        yield port, web, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        web.stop()


def test_a_signed_webhook_reaches_the_web_process_through_nginx(nginx_in_front):
    port, web, tmp_path = nginx_in_front
    body = participant_body(1, run="nginx")
    status, answer = post_signed(port, body)
    assert status == 200, answer
    assert hashlib.sha256(body).hexdigest() in stored_hashes(tmp_path / "deploy.db")
    # The web process's JSON errors pass through; a bad signature is still refused.
    status, answer = post_signed(port, body, secret="wrong")
    assert status == 401 and b"invalid_signature" in answer
    status, answer = get(port, "/healthz")
    assert status == 200 and answer == b'{"status": "ok"}'


def test_nginx_holds_slow_clients_and_refuses_big_bodies_as_json(nginx_in_front):
    port, web, _ = nginx_in_front
    with SlowClients(port, headers=40, bodies=20, interval=0.3, lifetime=20) as slow:
        time.sleep(1)
        assert slow.opened == 60
        for n in range(10):
            assert post_signed(port, participant_body(n, run="slow-nginx"), timeout=5)[0] == 200
            assert get(port, "/healthz", timeout=5)[0] == 200
    big = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    status, answer = post_signed(port, big)
    assert status == 413 and json.loads(answer)["error"]  # nginx's own refusal, as JSON


def test_the_caddyfile_is_valid_for_debians_caddy(tmp_path):
    caddy = shutil.which("caddy")
    assert caddy, "caddy is needed (apt-get install caddy): .ci/run installs it"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config", str(DEPLOY / "Caddyfile")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Bodies buffered (`buffer_requests` in Debian 12's caddy 2.6, `request_buffers` from 2.7), slow
    # headers and bodies cut off after 10 s, 1 MB at most.
    assert '"buffer_requests":true' in result.stdout or '"request_buffers":' in result.stdout
    assert '"read_header_timeout":10000000000' in result.stdout and '"read_timeout":10000000000' in result.stdout
    assert '"max_size":1000000' in result.stdout


def _gunicorn_args(line: str) -> list[str]:
    args = shlex.split(line)
    args = [a for a in args if a != "exec"]
    start = next(i for i, a in enumerate(args) if a.endswith("gunicorn"))
    out = args[start + 1 :]
    i = out.index("--bind")
    return out[:i] + out[i + 2 :]


def test_the_systemd_units_run_the_procfile_lines():
    unit = (DEPLOY / "systemd" / "attendance-web.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.MULTILINE).group(1)
    procfile = procfile_line("web").replace("${WEB_CONCURRENCY:-2}", "2")
    assert _gunicorn_args(exec_start) == _gunicorn_args(procfile)
    assert "--bind 127.0.0.1:8000" in exec_start  # only the proxy reaches it
    worker = (DEPLOY / "systemd" / "attendance-worker.service").read_text()
    assert re.search(r"^ExecStart=\S+/python worker\.py schedule$", worker, re.MULTILINE)
    assert procfile_line("worker") == "python worker.py schedule"
