"""The web app in a real browser (Debian's headless Chromium) and through its JSON API,
on demo data the real pipeline stored: browse to a detection, hear it (the player
reports 10 s), log in, confirm it, find the review in PostgreSQL; and what a stranger or
a forged request gets."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from http.cookiejar import CookieJar
from typing import Any

import psycopg
import pytest
from conftest import WebApp, screenshot

from soundscape.database import database_url

pytestmark = pytest.mark.browser


def get_json(url: str, opener: Any = None) -> tuple[int, Any]:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def post_json(url: str, body: dict[str, Any], opener: Any,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def logged_in(app: WebApp) -> Any:
    """An opener holding a session cookie, logged in through the form as a browser is."""
    import re
    from urllib.parse import urlencode

    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(app.url + "/login", timeout=30).read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    opener.open(app.url + "/login", urlencode({
        "username": app.reviewer, "password": app.password, "csrf": token.group(1),
        "next": "/"}).encode(), timeout=30).close()
    assert any(c.name == "soundscape_session" for c in jar)
    return opener


def reviews(app: WebApp) -> list[tuple]:
    with psycopg.connect(database_url(app.settings, "reader")) as conn:
        return conn.execute("SELECT chunk_id, label, verdict, new_label, reviewer"
                            " FROM reviews ORDER BY review_id").fetchall()


def test_the_api_lists_stations_and_pages_detections_by_keyset(web_app: WebApp) -> None:
    status, body = get_json(web_app.url + "/api/v1/stations")
    assert status == 200
    assert {s["station_id"] for s in body["stations"]} >= {"demo-01", "demo-02"}

    seen: list[tuple[str, str]] = []
    after = ""
    while True:
        status, page = get_json(f"{web_app.url}/api/v1/detections?limit=7&after={after}")
        assert status == 200
        seen += [(d["chunk_id"], d["label"]) for d in page["detections"]]
        if page["next"] is None:
            break
        after = page["next"]
    with psycopg.connect(database_url(web_app.settings, "reader")) as conn:
        total = conn.execute("SELECT count(*) FROM detections").fetchone()[0]
    assert len(seen) == len(set(seen)) == total > 7  # every detection once, in pages

    label = get_json(web_app.url + "/api/v1/detections?limit=1")[1]["detections"][0]["label"]
    status, page_species = get_json(
        f"{web_app.url}/api/v1/detections?limit=1000&species={urllib.parse.quote(label)}")
    assert page_species["detections"] and all(d["label"] == label
                                              for d in page_species["detections"])
    assert get_json(web_app.url + "/api/v1/detections?after=garbage")[0] == 422
    assert get_json(web_app.url + "/api/v1/detections?min_confidence=7")[0] == 422


def test_a_reviewer_hears_a_detection_and_confirms_it_in_the_browser(
    web_app: WebApp, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(web_app.url + "/")
    assert browser.find_elements(By.CSS_SELECTOR, "#stations td a")
    screenshot(browser, "overview")

    browser.get(web_app.url + "/detections?min_confidence=0.5&review=unreviewed")
    screenshot(browser, "detections")
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "#detections a.detection"))
               ).click()
    player = wait.until(ready.presence_of_element_located((By.ID, "player")))
    duration = wait.until(lambda d: d.execute_script(
        "const a = document.getElementById('player');"
        "return a.readyState >= 1 && isFinite(a.duration) ? a.duration : null;"))
    assert abs(duration - 10.0) < 0.05, duration
    assert browser.execute_script("return document.getElementById('spectrogram').naturalWidth"
                                  ) == 1000
    assert player.get_attribute("src").endswith(browser.current_url.rsplit("/", 1)[1])
    chunk_url = browser.current_url
    chunk_id = uuid.UUID(chunk_url.rsplit("/", 1)[1])

    # Not logged in: no review buttons, a way to log in instead.
    link = browser.find_element(By.LINK_TEXT, "Log in to review")
    link.click()
    wait.until(ready.presence_of_element_located((By.ID, "username"))
               ).send_keys(web_app.reviewer)
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.ID, "login").click()
    error = wait.until(ready.presence_of_element_located((By.ID, "error")))
    assert "wrong username or password" in error.text
    browser.find_element(By.ID, "username").send_keys(web_app.reviewer)
    browser.find_element(By.ID, "password").send_keys(web_app.password)
    browser.find_element(By.ID, "login").click()
    wait.until(ready.url_to_be(chunk_url))
    screenshot(browser, "detection")

    label = wait.until(ready.presence_of_element_located(
        (By.CSS_SELECTOR, "form.review input[name=label]"))).get_attribute("value")
    before = len(reviews(web_app))
    browser.find_element(By.CSS_SELECTOR, "form.review button.confirm").click()
    saved = wait.until(ready.presence_of_element_located((By.ID, "saved")))
    assert "saved" in saved.text
    stored = reviews(web_app)
    assert len(stored) == before + 1
    assert stored[-1] == (chunk_id, label, "confirm", None, web_app.reviewer)
    assert "confirm" in browser.find_element(By.ID, "chunk-detections").text

    # The list can show what is reviewed now.
    browser.get(web_app.url + "/detections?review=confirm")
    links = browser.find_elements(By.CSS_SELECTOR, "#detections a.detection")
    assert [a.get_attribute("href") for a in links] == [chunk_url]


def test_strangers_and_forged_requests_store_nothing(web_app: WebApp) -> None:
    status, body = get_json(web_app.url + "/api/v1/detections?limit=1&min_confidence=0.5")
    detection = body["detections"][0]
    review = {"chunk_id": detection["chunk_id"], "label": detection["label"],
              "verdict": "reject"}
    before = reviews(web_app)
    anonymous = urllib.request.build_opener()
    assert post_json(web_app.url + "/api/v1/reviews", review, anonymous)[0] == 401

    opener = logged_in(web_app)
    forged = post_json(web_app.url + "/api/v1/reviews", review, opener,
                       {"X-CSRF-Token": "forged"})
    assert forged[0] == 403
    assert post_json(web_app.url + "/api/v1/reviews", review, opener)[0] == 403
    token = get_json(web_app.url + "/api/v1/session", opener)[1]["csrf_token"]
    headers = {"X-CSRF-Token": token}
    unknown = review | {"chunk_id": str(uuid.uuid4())}
    assert post_json(web_app.url + "/api/v1/reviews", unknown, opener, headers)[0] == 404
    assert post_json(web_app.url + "/api/v1/reviews", review | {"verdict": "maybe"},
                     opener, headers)[0] == 422
    assert post_json(web_app.url + "/api/v1/reviews", review | {"verdict": "relabel"},
                     opener, headers)[0] == 422
    assert reviews(web_app) == before  # nothing of the above was stored

    status, done = post_json(web_app.url + "/api/v1/reviews",
                             review | {"comment": "wind"}, opener, headers)
    assert status == 201 and done["reviewer"] == web_app.reviewer
    assert reviews(web_app)[-1][2:] == ("reject", None, web_app.reviewer)

    # A form posted from elsewhere (the session cookie, no token): refused, not stored.
    from urllib.parse import urlencode

    form = urlencode({"label": detection["label"], "verdict": "confirm", "csrf": "x"}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"{web_app.url}/chunks/{detection['chunk_id']}/reviews", form, timeout=30)
    assert refused.value.code == 403
    assert len(reviews(web_app)) == len(before) + 1
    # Still serving.
    assert get_json(web_app.url + "/healthz")[1] == {"healthy": True, "database": "up"}
    # A clip that does not exist, a path that is not a chunk id.
    assert get_json(f"{web_app.url}/clips/{uuid.uuid4()}")[0] == 404
    assert get_json(f"{web_app.url}/clips/..%2F..%2Fetc%2Fpasswd")[0] == 404


def test_reviews_become_a_labelled_training_manifest(web_app: WebApp, tmp_path) -> None:  # noqa: ANN001
    import csv
    import os
    import subprocess
    import sys

    opener = logged_in(web_app)
    headers = {"X-CSRF-Token": get_json(web_app.url + "/api/v1/session", opener)[1]["csrf_token"]}
    with psycopg.connect(database_url(web_app.settings, "reader")) as conn:
        chunks = conn.execute(
            "SELECT c.chunk_id, array_agg(d.label ORDER BY d.label) FROM clips c"
            " JOIN detections d USING (chunk_id) WHERE c.evicted_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.chunk_id = c.chunk_id)"
            " GROUP BY c.chunk_id, c.chunk_start ORDER BY c.chunk_start LIMIT 3").fetchall()
    assert len(chunks) == 3
    (confirmed, labels_a), (relabelled, labels_b), (rejected, labels_c) = chunks

    def review(chunk_id: uuid.UUID, label: str, verdict: str, **extra: str) -> None:
        body = {"chunk_id": str(chunk_id), "label": label, "verdict": verdict, **extra}
        assert post_json(web_app.url + "/api/v1/reviews", body, opener, headers)[0] == 201

    review(confirmed, labels_a[0], "reject")  # changed their mind: the latest counts
    review(confirmed, labels_a[0], "confirm")
    review(relabelled, labels_b[0], "relabel", new_label="Turdus merula")
    for label in labels_c:
        review(rejected, label, "reject")

    out = tmp_path / "manifest.csv"
    settings = web_app.settings
    env = {**os.environ, "SOUNDSCAPE_STATE_DIR": str(settings.state_dir),
           "SOUNDSCAPE_POSTGRES__URL": database_url(settings, "writer"),
           "SOUNDSCAPE_CLIPS__DIR": str(settings.clips.dir), "SOUNDSCAPE_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "soundscape", "reviews", "export",
                           "--out", str(out), "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {row["chunk_id"]: row for row in csv.DictReader(out.open(newline=""))}
    assert report["rows"] == len(rows) >= 3 and report["missing_files"] == 0
    assert rows[str(confirmed)]["labels"] == labels_a[0]
    assert rows[str(relabelled)]["labels"] == "Turdus merula"
    assert rows[str(rejected)]["labels"] == ""  # a checked negative
    for row in rows.values():
        assert os.path.isfile(row["path"]) and (row["start"], row["end"]) == ("0.0", "10.0")
        assert row["recording"].startswith(row["station"] + "/")


def test_the_demo_leaves_the_web_app_running_and_infra_down_stops_it(web_app: WebApp) -> None:
    """What `soundscape demo` starts (ensure_web) and `infra down` stops (stack.stop_web)."""
    from soundscape.app.web_background import ensure_web, running_web
    from soundscape.infra import stack

    settings = web_app.settings
    url = ensure_web(settings)
    try:
        pid = running_web(settings)["pid"]
        assert get_json(url + "healthz")[1]["healthy"] is True
        assert ensure_web(settings) == url and running_web(settings)["pid"] == pid  # reused
        web = [entry for entry in stack.listeners(settings) if entry["service"] == "web"]
        assert web and web[0]["address"] == url.removeprefix("http://").rstrip("/")
    finally:
        assert stack.stop_web(settings) is True
    assert running_web(settings) is None and stack.stop_web(settings) is False


def _upload(app: WebApp, opener: Any, name: str, data: bytes, token: str) -> tuple[int, Any]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        app.url + "/api/v1/classify", body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                 "X-CSRF-Token": token})
    try:
        with opener.open(request, timeout=120) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_an_uploaded_recording_is_scored_in_10_s_chunks_and_bad_uploads_are_refused(
    web_app: WebApp
) -> None:
    import http.client
    import io

    import numpy as np
    import soundfile as sf

    opener = logged_in(web_app)
    token = get_json(web_app.url + "/api/v1/session", opener)[1]["csrf_token"]
    rng = np.random.default_rng(3)
    audio = rng.normal(0, 0.05, 44_100 * 25).astype(np.float32)  # 25 s at 44.1 kHz
    audio[44_100 * 3: 44_100 * 4] += 0.3 * np.sin(np.arange(44_100) * 2 * np.pi * 3000 / 44_100)
    wav = io.BytesIO()
    sf.write(wav, audio, 44_100, format="WAV", subtype="PCM_16")
    status, answer = _upload(web_app, opener, "field.wav", wav.getvalue(), token)
    assert status == 200, answer
    assert [c["index"] for c in answer["chunks"]] == [0, 1, 2]  # 10 + 10 + 5 s padded
    assert answer["duration_s"] == 25.0 and answer["bundle_version"]
    for chunk in answer["chunks"]:
        assert len(chunk["top"]) == 5
        assert all(0.0 <= t["probability"] <= 1.0 for t in chunk["top"])
        with urllib.request.urlopen(web_app.url + chunk["spectrogram"], timeout=30) as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"

    flac = io.BytesIO()
    sf.write(flac, audio, 44_100, format="FLAC", subtype="PCM_16")
    truncated = flac.getvalue()[: len(flac.getvalue()) // 2]
    for name, data, expected in (("notes.txt", b"this is not audio" * 100, 415),
                                 ("cut.flac", truncated, 415),
                                 ("empty.wav", b"", 415)):
        status, answer = _upload(web_app, opener, name, data, token)
        assert status == expected, (name, status, answer)
    assert _upload(web_app, opener, "field.wav", wav.getvalue(), "forged")[0] == 403
    assert _upload(web_app, urllib.request.build_opener(), "field.wav", wav.getvalue(),
                   token)[0] == 401

    # 2 GB announced: refused before the body is read (a few MB are sent, not 2 GB).
    host, port = web_app.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/api/v1/classify")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(2 * 1024**3))
    connection.endheaders()
    try:
        connection.send(b"\0" * (4 * 1024 * 1024))
    except OSError:
        pass  # the server may close first: what counts is its answer
    answer = connection.getresponse()
    assert answer.status == 413, answer.status
    connection.close()
    assert get_json(web_app.url + "/healthz")[1]["healthy"] is True  # still serving


def test_the_web_benchmark_times_every_kind_of_request(web_app: WebApp) -> None:
    """`soundscape bench web` at a small size: it fills, serves, times and cleans up."""
    from soundscape.app.web_bench import run_web_bench

    report = run_web_bench(web_app.settings, detections=3000, requests=5, progress=False)
    assert report["rows"]["detections"] == 3000 and report["rows"]["clips"] > 0
    assert len(report["requests"]) == 10
    assert all(0 < t["server_p50_ms"] <= t["server_p95_ms"] for t in report["requests"].values())
    assert report["classify"]["chunks"] == 6 and report["classify"]["chunks_per_s"] > 0
    with psycopg.connect(database_url(web_app.settings, "reader")) as conn:
        left = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'webbench%'")
        assert left.fetchall() == []  # the scratch schema is gone


def test_accounts_are_made_by_the_operator_command(web_app: WebApp) -> None:
    """`soundscape web user add` (as the owner), then a login with it; a short password,
    a duplicate and a bad name are refused with a message, nothing stored."""
    import os
    import subprocess
    import sys

    settings = web_app.settings
    env = {**os.environ, "SOUNDSCAPE_STATE_DIR": str(settings.state_dir),
           "SOUNDSCAPE_POSTGRES__URL": database_url(settings, "writer"),
           "SOUNDSCAPE_POSTGRES__OWNER_URL": database_url(settings, "owner")}

    def add(name: str, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "soundscape", "web", "user", "add", name,
                               "--password-stdin", "--json", *extra], input=password + "\n",
                              env=env, capture_output=True, text=True, timeout=60)

    made = add("grace", "a long enough secret", "--role", "admin")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {"user": "grace", "role": "admin", "created": True}
    for name, password, hint in (("grace", "another long secret", "exists"),
                                 ("bob", "short", "at least 10"),
                                 ("bad name", "a long enough secret", "username")):
        refused = add(name, password)
        assert refused.returncode != 0 and hint in refused.stderr, refused.stderr
    with psycopg.connect(database_url(settings, "reader")) as conn:
        users = conn.execute("SELECT username, role FROM web_users ORDER BY 1").fetchall()
    assert ("grace", "admin") in users and not {"bob", "bad name"} & {u for u, _ in users}
    grace = WebApp(web_app.url, settings, "grace", "a long enough secret")
    assert get_json(web_app.url + "/api/v1/session", logged_in(grace))[1]["role"] == "admin"
