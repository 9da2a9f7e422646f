"""Concurrent clients: text searches through the app's API from 1 client and from
8 clients at once, each client its own process with its own ``gradio_client``
(as separate users would be), p50/p95 per query.

On a small machine the clients share the CPU with the app, so the section also
reports the CPU time one query costs (app and client) and the least time 8
queries at once can take on this many cores: p50 with 8 clients against that
floor shows whether the app ever leaves the CPU idle while searches wait.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .report import Report
from .startup import served_app
from .stats import percentile

CLIENTS = 8
TARGET_RATIO = 3.0  # p50 with 8 clients <= 3x the single client's p50

# One client: connect, warm up, wait for the start signal, time its queries, print them.
# Files in the results are not downloaded: what is timed is the app's answer.
_CLIENT = """
import json, sys, time
from gradio_client import Client
url, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = Client(url, verbose=False, download_files=False)
client.predict("warm up", k=10, api_name="/search_text")
print("ready", flush=True)
sys.stdin.readline()
timings = []
for number in range(start, start + count):
    began = time.perf_counter()
    client.predict(f"a photo of a {['dog', 'beach', 'city', 'cat'][number % 4]} number {number}", k=10,
                   api_name="/search_text")
    timings.append(time.perf_counter() - began)
print(json.dumps(timings), flush=True)
"""


def _cpu_seconds(process) -> float:
    import psutil

    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def _clients_at_once(url: str, clients: int, queries: int) -> tuple[list[float], float]:
    """Timings of every query, and the CPU seconds the clients used while querying."""
    import psutil

    runs = [subprocess.Popen([sys.executable, "-c", _CLIENT, url, str(1000 * i), str(queries)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(clients)]
    try:
        for run in runs:
            if run.stdout.readline().strip() != "ready":
                raise RuntimeError("a benchmark client could not connect to the app")
        before = [psutil.Process(run.pid).cpu_times() for run in runs]
        for run in runs:
            run.stdin.write("go\n")
            run.stdin.flush()
        timings: list[float] = []
        client_cpu = 0.0
        for run, start in zip(runs, before):
            line = run.stdout.readline()
            end = psutil.Process(run.pid).cpu_times()
            client_cpu += (end.user + end.system) - (start.user + start.system)
            timings += json.loads(line)
        return timings, client_cpu
    finally:
        for run in runs:
            run.kill()
            run.wait()


def run(report: Report, model: str, store: Path, queries: int = 20) -> None:
    with served_app(model, store) as (url, _ready, app):
        single, _ = _clients_at_once(url, 1, queries)
        app_cpu_before = _cpu_seconds(app)
        together, client_cpu = _clients_at_once(url, CLIENTS, queries)
        app_cpu = _cpu_seconds(app) - app_cpu_before
    p50_one, p50_many = percentile(single, 50), percentile(together, 50)
    section = "concurrency"
    report.add(section, "1 client: text query p50", p50_one * 1000, "ms")
    report.add(section, "1 client: text query p95", percentile(single, 95) * 1000, "ms")
    report.add(section, f"{CLIENTS} clients: text query p50", p50_many * 1000, "ms")
    report.add(section, f"{CLIENTS} clients: text query p95", percentile(together, 95) * 1000, "ms")
    ratio = p50_many / p50_one
    report.add(section, f"p50 with {CLIENTS} clients / 1 client", ratio, "x", baseline="1 client",
               ratio=ratio, target=f"<= {TARGET_RATIO:g}", met=ratio <= TARGET_RATIO)
    count = len(together)
    cores = os.cpu_count() or 1
    per_query_cpu = (app_cpu + client_cpu) / count
    report.add(section, "CPU per query: app", app_cpu / count * 1000, "ms")
    report.add(section, "CPU per query: client", client_cpu / count * 1000, "ms")
    floor = CLIENTS * per_query_cpu / cores  # every core busy all the time
    report.add(section, f"{CLIENTS} clients: p50 / least possible on {cores} cores", p50_many / floor, "x",
               baseline="all cores busy", ratio=p50_many / floor)
    report.details["concurrency"] = {"clients": CLIENTS, "queries_per_client": queries, "cores": cores,
                                     "single_ms": [round(t * 1000, 2) for t in single],
                                     "together_ms": [round(t * 1000, 2) for t in together]}
