"""Slow clients: signed webhooks and /healthz latency while hundreds of connections trickle.

Starts the Procfile `web` line on 127.0.0.1, opens --headers connections that send their
headers a byte every --interval seconds and --bodies that do the same with a body, then
sends signed webhooks and /healthz requests (each on a new connection, one every
--gap seconds) and prints p50/p99/max, failures, and how long the server let the slow
clients hold their connections. Bounded: --seconds of measurement.
"""

from __future__ import annotations

import argparse
import http.client
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402
from bench.slowloris import SlowClients  # noqa: E402


def timed_request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> float | None:
    """Seconds until a 2xx answer, or None."""
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    return time.monotonic() - started if 200 <= response.status < 300 else None


def measure(port: int, seconds: float, gap: float) -> dict[str, list[float | None]]:
    """Alternate signed webhooks and /healthz for `seconds`."""
    results: dict[str, list[float | None]] = {"webhook": [], "healthz": []}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        body = harness.participant_event("meeting.participant_joined", run=f"slow{int(time.time())}", n=n)
        raw = harness.signed_request(body)
        head, _, payload = raw.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        headers.pop("Content-Length", None)
        results["webhook"].append(timed_request(port, "POST", "/webhooks/zoom", payload, headers))
        results["healthz"].append(timed_request(port, "GET", "/healthz"))
        time.sleep(gap)
    return results


def summary(name: str, values: list[float | None]) -> str:
    answered = sorted(v for v in values if v is not None)
    failed = len(values) - len(answered)
    if not answered:
        return f"{name}: {len(values)} requests, all failed"
    return (
        f"{name}: {len(values)} requests, {failed} failed; p50 {harness.percentile(answered, 50) * 1000:.1f} ms, "
        f"p99 {harness.percentile(answered, 99) * 1000:.1f} ms, max {answered[-1] * 1000:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headers", type=int, default=200, help="connections trickling headers")
    parser.add_argument("--bodies", type=int, default=50, help="connections trickling a body")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between the slow clients' bytes")
    parser.add_argument("--seconds", type=float, default=20, help="measurement time")
    parser.add_argument("--gap", type=float, default=0.02, help="pause between measured requests")
    args = parser.parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    print("$ python bench/bench_slow_clients.py " + " ".join(shlex.quote(a) for a in shown))
    print(f"machine: {harness.machine_description()}")
    with harness.temp_dir("bench-slow-") as tmp:
        tmp_path = Path(tmp)
        env = harness.bench_env(tmp_path / "slow.db")
        port = harness.free_port()
        command = harness.web_command(port)
        print(f"web: {command}")
        with harness.running("web", command, port, env, tmp_path):
            baseline = measure(port, 3, args.gap)
            print("without slow clients:")
            for name, values in baseline.items():
                print("  " + summary(name, values))
            slow = SlowClients(port, args.headers, args.bodies, interval=args.interval, lifetime=args.seconds + 30)
            with slow:
                time.sleep(2)  # let them all connect and start trickling
                print(f"with {slow.opened} slow clients ({args.headers} trickling headers, {args.bodies} a body):")
                loaded = measure(port, args.seconds, args.gap)
                for name, values in loaded.items():
                    print("  " + summary(name, values))
                time.sleep(max(0.0, 12 - args.seconds))
            cut = sorted(slow.cut_off)
            if cut:
                print(
                    f"slow clients cut off by the server: {len(cut)} of {slow.opened}, after "
                    f"{cut[0]:.1f} to {cut[-1]:.1f} s (median {harness.median(cut):.1f} s)"
                )
            else:
                print(f"slow clients cut off by the server: none of {slow.opened}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
