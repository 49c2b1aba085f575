"""`soundscape bench web`: the web app's pages and API at a million detections.

A scratch schema is filled with sample results (3 detections each, 50 stations, a week
ago), clips for a tenth of the chunks and reviews for a hundredth; the real app serves
it with uvicorn on loopback, and each kind of request is timed N times over one
keep-alive connection. The server time comes from the app's `Server-Timing` header (the
time inside the app, database included); the client time adds HTTP on loopback. The
first request of each kind is reported apart (cold: the overview's species counts are
then computed, later ones reuse them for a minute). Then
the classify endpoint scores an uploaded minute of audio with the demo bundle.
Everything is dropped afterwards.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import statistics
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
from tqdm import tqdm

from soundscape.database import database_url
from soundscape.settings import Settings

DETECTIONS_PER_RESULT = 3
STATIONS = 50


def run_web_bench(settings: Settings, detections: int = 1_000_000, requests: int = 50,
                  progress: bool = True) -> dict[str, Any]:
    import psycopg
    import uvicorn

    from soundscape.app.web_classifier import ScorerClassifier
    from soundscape.infra.process import free_port
    from soundscape.sinks import migrate
    from soundscape.sinks.sample_results import NS, detection_stream, register_sample_bundle
    from soundscape.sinks.writer import ResultBatch, ResultWriter
    from soundscape.web.accounts import add_user
    from soundscape.web.app import create_app

    schema = f"webbench_{uuid.uuid4().hex[:8]}"
    results = -(-detections // DETECTIONS_PER_RESULT)
    start_ns = (time.time_ns() // NS - 7 * 86_400) * NS
    report: dict[str, Any] = {"detections": results * DETECTIONS_PER_RESULT,
                              "requests_per_kind": requests}
    with migrate.scratch_schema(settings, schema):
        register_sample_bundle(settings, schema=schema)
        writer = ResultWriter(settings, schema=schema, application_name="soundscape-bench")
        writer.maintain()
        began = time.perf_counter()
        bar = tqdm(total=results, desc="fill", unit="result", disable=not progress)
        batch: list[Any] = []
        for item in detection_stream(results, STATIONS, start_ns,
                                     detections=DETECTIONS_PER_RESULT):
            batch.append(item)
            if len(batch) == 2000:
                writer.write(ResultBatch(batch))
                bar.update(len(batch))
                batch = []
        if batch:
            writer.write(ResultBatch(batch))
            bar.update(len(batch))
        bar.close()
        writer.close()
        options = f"-c search_path={schema} -c timezone=UTC"
        with psycopg.connect(database_url(settings, "owner"), autocommit=True,
                             options=options) as conn:
            conn.execute("INSERT INTO clips (chunk_id, chunk_start, station_id, path, bytes,"
                         " codec, reason, top_label, top_probability) SELECT chunk_id,"
                         " chunk_start, station_id, station_id || '/' || chunk_id || '.flac',"
                         " 200000, 'flac', 'detection', top_label, top_probability FROM chunks"
                         " WHERE abs(hashtext(chunk_id::text)) % 10 = 0")
            conn.execute("INSERT INTO reviews (chunk_id, chunk_start, label, verdict, reviewer)"
                         " SELECT chunk_id, chunk_start, label, 'confirm', 'bench' FROM"
                         " detections WHERE abs(hashtext(chunk_id::text)) % 100 = 0")
            conn.execute("ANALYZE")
            password = "bench-" + uuid.uuid4().hex
            add_user(conn, "bench", password, "reviewer")
            counts = conn.execute("SELECT (SELECT count(*) FROM detections),"
                                  " (SELECT count(*) FROM clips), (SELECT count(*) FROM reviews)"
                                  ).fetchone()
            deep = conn.execute("SELECT chunk_start, chunk_id, label FROM detections ORDER BY"
                                " chunk_start DESC, chunk_id DESC, label DESC OFFSET 500000"
                                " LIMIT 1").fetchone()
            sample = conn.execute("SELECT chunk_id, label, station_id FROM detections"
                                  " ORDER BY chunk_start DESC LIMIT 1 OFFSET 1000").fetchone()
        report["fill_s"] = round(time.perf_counter() - began, 1)
        report["rows"] = {"detections": counts[0], "clips": counts[1], "reviews": counts[2]}

        app = create_app(settings, ScorerClassifier(settings), schema=schema)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            client = _Client(port)
            client.wait_ready()
            from soundscape.web.queries import Cursor

            cursor = Cursor(deep[0], deep[1], deep[2]).encode() if deep else ""
            chunk_id, label, station = sample
            kinds = {
                "detections page 1": "/detections",
                "detections page at row 500,000": f"/detections?after={cursor}",
                "detections of a species": f"/detections?species={quote(label)}",
                "detections of a station": f"/detections?station={quote(station)}",
                "detections confirmed": "/detections?review=confirm",
                "detections >= 0.9": "/detections?min_confidence=0.9",
                "api detections (100)": "/api/v1/detections?limit=100",
                "api stations": "/api/v1/stations",
                "a detection's page": f"/chunks/{chunk_id}",
                "overview": "/",
            }
            timings: dict[str, dict[str, float]] = {}
            for kind, path in tqdm(kinds.items(), desc="requests", disable=not progress):
                first = client.get(path)[0]  # the first of each kind: cold caches, plans
                server_ms, client_ms = [], []
                for _ in range(requests):
                    served, took = client.get(path)
                    server_ms.append(served)
                    client_ms.append(took)
                timings[kind] = {"first_server_ms": round(first, 1),
                                 "server_p50_ms": _pct(server_ms, 50),
                                 "server_p95_ms": _pct(server_ms, 95),
                                 "client_p50_ms": _pct(client_ms, 50)}
            report["requests"] = timings
            report["worst_server_p95_ms"] = max(t["server_p95_ms"] for t in timings.values())
            report["classify"] = _classify(client, password)
        finally:
            server.should_exit = True
            thread.join(10)
    return report


class _Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/healthz")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                self.connection.close()
                time.sleep(0.2)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse,
                                                                 bytes, float]:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        began = time.perf_counter()
        self.connection.request(method, path, body,
                                {**({"Cookie": cookie} if cookie else {}), **(headers or {})})
        answer = self.connection.getresponse()
        data = answer.read()
        took = (time.perf_counter() - began) * 1e3
        for header in answer.headers.get_all("set-cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        if answer.status >= 400:
            raise RuntimeError(f"{method} {path}: {answer.status} {data[:200]!r}")
        return answer, data, took

    def get(self, path: str) -> tuple[float, float]:
        answer, _, took = self.request("GET", path)
        timing = re.search(r"dur=([0-9.]+)", answer.headers.get("server-timing", ""))
        return (float(timing.group(1)) if timing else took), took


def _classify(client: _Client, password: str) -> dict[str, Any]:
    import soundfile as sf

    page = client.request("GET", "/login")[1].decode()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    client.request("POST", "/login", urlencode({"username": "bench", "password": password,
                                                "csrf": token.group(1), "next": "/"}).encode(),
                   {"Content-Type": "application/x-www-form-urlencoded"})
    session = json.loads(client.request("GET", "/api/v1/session")[1])
    audio = np.random.default_rng(0).normal(0, 0.05, 48_000 * 60).astype(np.float32)
    wav = io.BytesIO()
    sf.write(wav, audio, 48_000, format="WAV", subtype="PCM_16")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"minute.wav\"\r\n\r\n").encode() + wav.getvalue() + \
        f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "X-CSRF-Token": session["csrf_token"]}
    client.request("POST", "/api/v1/classify", body, headers)  # loads the model
    rates = []
    for _ in range(3):
        answer = json.loads(client.request("POST", "/api/v1/classify", body, headers)[1])
        rates.append(len(answer["chunks"]) / answer["seconds"])
    return {"upload": "60 s WAV, 48 kHz", "chunks": len(answer["chunks"]),
            "bundle": answer["bundle_version"],
            "chunks_per_s": round(statistics.median(rates), 1)}


def _pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 1)
