"""The clients of `vitaltrail bench fhir`, in a module of their own: the process they run in
imports nothing but the standard library, so it starts at once and costs the server little."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

NEXT_LINK = re.compile(rb'"relation":"next","url":"([^"]+)"')  # in the server's compact JSON


def clients_worker(
    port: int,
    headers: dict[str, str],
    paths: list[str],
    clients: int,
    seconds: float,
    walk: bool,
    out: Path,
) -> None:
    """``clients`` closed-loop clients for ``seconds``: each asks for a first page (its own
    patient's, round robin) and, when ``walk``, follows its next links to the end before the
    next first page. Each answer's page number (1: a first page), status, latency, size."""
    results: list[tuple[int, int, float, int]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = i
        while time.monotonic() < stop:
            path: str | None = paths[n % len(paths)]
            n += 1
            page = 0
            while path is not None and time.monotonic() < stop:
                page += 1
                began = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - began
                with lock:
                    results.append((page, response.status, elapsed, len(body)))
                found = NEXT_LINK.search(body) if walk and response.status == 200 else None
                path = path_of(found[1].decode()) if found else None
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.write_text(json.dumps({"elapsed_s": time.perf_counter() - began, "results": results}))


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"
