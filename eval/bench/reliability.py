"""Load and restart benchmark of `lumenrec serve` (a real subprocess on 127.0.0.1).

    python -m lumenrec.eval.bench.reliability --shoppers 8 --duration 60 [--data synthetic]

1. Starts ``lumenrec serve --data DATA --db TMP/sessions.db`` on a free loopback port, waits for
   ``/health``.
2. Load: N simulated shoppers (threads, one HTTP client each) replay conversations for a bounded
   time: create a session, send each user turn of a conversation (the dev conversations of
   regen-office-dev when present, else the synthetic store's), then a critique on what was shown
   ("not <brand> again") and an "explain" turn; half the sessions are deleted afterwards. Every request
   is timed; a non-2xx answer or a transport error counts as an error (target 0).
   The server's RSS is sampled every second: before (after warm-up), after, peak, and the slope over
   the second half of the run (a leak shows as a steady positive slope).
3. Restart: SIGKILL the server, start it again on the same database, time until /health answers and
   check that every kept session is still there.

Writes docs/results/reliability.json and the ``reliability`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MiB (Linux /proc; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def load_scripts(data: str, limit: int = 200) -> tuple[list[dict[str, Any]], str]:
    """Conversations to replay: [{history, turns: [user texts]}], and where they came from."""
    from lumenrec.data.registry import find_dataset_dir, load_dataset
    from lumenrec.errors import DataNotFoundError

    try:
        from lumenrec.data.benchmark import load_conversations

        path = find_dataset_dir("regen-office-dev") / "conversations.jsonl"
        convs = load_conversations(path, skip_bad=True)
        source = str(path)
    except (DataNotFoundError, OSError):
        convs = load_dataset(data).conversations
        source = f"{data} conversations"
    scripts = [{"history": list(c.history), "turns": [t.text for t in c.turns if t.role == "user" and t.text.strip()]}
               for c in convs[:limit]]
    scripts = [s for s in scripts if s["turns"]]
    if not scripts:
        scripts = [{"history": [], "turns": ["I need gel pens", "something cheaper please"]}]
    return scripts, source


def start_server(data: str, db: Path, port: int, logf: Path, timeout_s: float = 300.0) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "lumenrec", "serve", "--data", data, "--db", str(db), "--port", str(port),
           "--rate-limit", "0"]
    proc = subprocess.Popen(cmd, stdout=open(logf, "ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"lumenrec serve exited with {proc.returncode}: {logf.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"lumenrec serve did not become healthy within {timeout_s} s")


class Shopper(threading.Thread):
    """Replays conversations until the deadline; records (kind, latency s, status) per request."""

    def __init__(self, base: str, scripts: list[dict[str, Any]], deadline: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.base, self.scripts, self.deadline = base, scripts, deadline
        self.rng = random.Random(seed)
        self.records: list[tuple[str, float, int]] = []
        self.errors: list[str] = []
        self.kept: list[str] = []

    def _call(self, client, kind: str, method: str, path: str, **kw):
        t0 = time.perf_counter()
        try:
            r = client.request(method, self.base + path, **kw)
            status = r.status_code
        except Exception as e:  # transport error: counted
            r, status = None, 0
            self.errors.append(f"{kind}: {type(e).__name__}: {e}"[:200])
        self.records.append((kind, time.perf_counter() - t0, status))
        if r is not None and not 200 <= status < 300:
            self.errors.append(f"{kind}: HTTP {status}: {r.text[:150]}")
        return r

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=60.0) as client:
            while time.time() < self.deadline:
                script = self.rng.choice(self.scripts)
                r = self._call(client, "create", "POST", "/v1/sessions", json={"history": script["history"]})
                if r is not None and r.status_code == 400:  # history ids of another catalogue: start fresh
                    self.records.pop()
                    self.errors.pop()
                    r = self._call(client, "create", "POST", "/v1/sessions", json={})
                if r is None or r.status_code != 201:
                    continue
                sid = r.json()["session_id"]
                last = None
                for text in script["turns"]:
                    if time.time() >= self.deadline:
                        break
                    last = self._call(client, "message", "POST", f"/v1/sessions/{sid}/messages", json={"message": text})
                if last is not None and last.status_code == 200 and last.json().get("items") and time.time() < self.deadline:
                    brand = last.json()["items"][0].get("brand") or "that brand"
                    self._call(client, "message", "POST", f"/v1/sessions/{sid}/messages", json={"message": f"not {brand} again"})
                    self._call(client, "message", "POST", f"/v1/sessions/{sid}/messages", json={"message": "why the first one?"})
                if self.rng.random() < 0.5:
                    self._call(client, "delete", "DELETE", f"/v1/sessions/{sid}")
                else:
                    self.kept.append(sid)


def run(shoppers: int = 8, duration_s: float = 60.0, data: str = "synthetic", restart: bool = True,
        workdir: str | None = None) -> dict[str, Any]:
    import httpx

    if not 1 <= shoppers <= 64:
        raise ValueError(f"shoppers must be in [1, 64] (this is a bounded local test), got {shoppers}")
    if not 1 <= duration_s <= 600:
        raise ValueError(f"duration must be in [1, 600] s, got {duration_s}")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="lumenrec-rel-"))
    tmp.mkdir(parents=True, exist_ok=True)
    db, logf, port = tmp / "sessions.db", tmp / "serve.log", _free_port()
    base = f"http://127.0.0.1:{port}"
    scripts, source = load_scripts(data)
    t_start = time.time()
    proc = start_server(data, db, port, logf)
    startup_s = time.time() - t_start
    try:
        # one request per route to warm lazy paths, then the RSS baseline
        httpx.post(f"{base}/v1/sessions/{httpx.post(f'{base}/v1/sessions', json={}).json()['session_id']}/messages",
                   json={"message": "warm up: gel pens"}, timeout=120)
        rss_before = rss_mb(proc.pid)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sampler():
            t0 = time.time()
            while not stop.is_set():
                v = rss_mb(proc.pid)
                if v is not None:
                    samples.append((time.time() - t0, v))
                stop.wait(1.0)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        deadline = time.time() + duration_s
        t0 = time.perf_counter()
        workers = [Shopper(base, scripts, deadline, seed=i) for i in range(shoppers)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(duration_s + 120)
        wall = time.perf_counter() - t0
        stop.set()
        th.join(5)
        rss_after = rss_mb(proc.pid)
        recs = [r for w in workers for r in w.records]
        errors = [e for w in workers for e in w.errors]
        kept = [s for w in workers for s in w.kept]
        msg = np.array([lat for kind, lat, _ in recs if kind == "message"]) * 1000.0
        all_lat = np.array([lat for _, lat, _ in recs]) * 1000.0
        half = [(t, v) for t, v in samples if t >= duration_s / 2]
        slope = float(np.polyfit([t for t, _ in half], [v for _, v in half], 1)[0] * 60.0) if len(half) >= 3 else None
        load = {
            "shoppers": shoppers, "duration_s": round(wall, 1), "conversations_from": source,
            "requests": len(recs), "messages": int(len(msg)), "sessions_created": sum(1 for k, _, _ in recs if k == "create"),
            "throughput_rps": round(len(recs) / wall, 2), "messages_per_s": round(len(msg) / wall, 2),
            "latency_ms_message": {q: round(float(np.percentile(msg, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
            if len(msg) else {}, "latency_ms_max_message": round(float(msg.max()), 1) if len(msg) else None,
            "latency_ms_all": {q: round(float(np.percentile(all_lat, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
            if len(all_lat) else {},
            "errors": len(errors), "error_examples": errors[:5],
            "rss_mb_before": round(rss_before, 1) if rss_before else None,
            "rss_mb_after": round(rss_after, 1) if rss_after else None,
            "rss_mb_peak": round(max(v for _, v in samples), 1) if samples else None,
            "rss_slope_mb_per_min_second_half": round(slope, 2) if slope is not None else None,
            # median RSS of each quarter of the run: a leak keeps climbing, warm-up flattens out
            "rss_mb_by_quarter": [round(float(np.median([v for t, v in samples if q * duration_s / 4 <= t < (q + 1) * duration_s / 4] or [np.nan])), 1)
                                  for q in range(4)] if samples else None,
            "server_startup_s": round(startup_s, 1),
        }
        result: dict[str, Any] = {"load": load}
        if restart:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            t1 = time.time()
            proc = start_server(data, db, port, logf)
            back = time.time() - t1
            missing = [s for s in kept if httpx.get(f"{base}/v1/sessions/{s}", timeout=30).status_code != 200]
            result["restart"] = {"sigkill_then_healthy_s": round(back, 1), "sessions_kept": len(kept),
                                 "sessions_missing_after_restart": len(missing)}
        return result
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def to_markdown(res: dict[str, Any], cmd: str) -> str:
    from lumenrec.eval.report import markdown_table

    L = res["load"]
    ml = L.get("latency_ms_message", {})
    rows = [["shoppers (threads)", L["shoppers"]], ["duration (s)", L["duration_s"]], ["requests", L["requests"]],
            ["chat turns", L["messages"]], ["throughput (requests/s)", L["throughput_rps"]],
            ["chat turns/s", L["messages_per_s"]],
            ["turn latency p50 / p95 / p99 (ms)", f"{ml.get('p50')} / {ml.get('p95')} / {ml.get('p99')}"],
            ["errors", L["errors"]],
            ["server RSS before / after / peak (MiB)", f"{L['rss_mb_before']} / {L['rss_mb_after']} / {L['rss_mb_peak']}"],
            ["RSS slope, second half (MiB/min)", L["rss_slope_mb_per_min_second_half"]],
            ["RSS median per quarter of the run (MiB)", " / ".join(str(v) for v in (L["rss_mb_by_quarter"] or []))],
            ["server start (s, model load + warm-up)", L["server_startup_s"]]]
    if "restart" in res:
        R = res["restart"]
        rows += [["SIGKILL -> healthy again (s)", R["sigkill_then_healthy_s"]],
                 ["sessions kept / missing after restart", f"{R['sessions_kept']} / {R['sessions_missing_after_restart']}"]]
    return (f"Command: `{cmd}` (a real `lumenrec serve` subprocess on 127.0.0.1, sessions in SQLite; "
            f"conversations from {L['conversations_from']}). Machine: 2 shared CPU cores.\n\n"
            + "The dev conversations' texts are replayed as they are; their item histories are sent too and, when "
              "they name items of another catalogue (the synthetic store), the session starts without them.\n\n"
            + markdown_table(["measure", "value"], rows, floatfmt=".1f")
            + "\n\nFault, bad-input and hostile-text checks are tests: `python -m pytest -q tests/agent/test_reliability_*.py "
              "tests/agent/test_server.py tests/agent/test_store.py`.\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shoppers", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--no-restart", action="store_true", help="skip the SIGKILL/restart measurement")
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the figures
    res = run(args.shoppers, args.duration, args.data, restart=not args.no_restart)
    from lumenrec.eval.report import machine_info, update_section, write_json

    cmd = "python -m lumenrec.eval.bench.reliability " + " ".join(argv if argv is not None else sys.argv[1:])
    res["command"], res["machine"] = cmd.strip(), machine_info()
    print(json.dumps(res, indent=2))
    if not args.no_write:
        write_json("reliability", res)
        update_section("reliability", to_markdown(res, cmd.strip()), title="Serving reliability (`lumenrec serve`)")
    return 0 if res["load"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
