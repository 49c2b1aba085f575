"""The web app on real demo data: the demo pipeline (replay, worker, sink, clip keeper)
fills a database of the module's own, then `soundscape web`'s app serves it with uvicorn
on a free loopback port, and a reviewer account exists."""

from __future__ import annotations

import os
import secrets
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from soundscape.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@dataclass
class WebApp:
    url: str
    settings: Settings
    reviewer: str
    password: str


@pytest.fixture(scope="module")
def web_app(backend, services: Settings, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[WebApp]:
    import psycopg
    import uvicorn

    from backends import drop_database, fresh_database
    from soundscape.app.demo import run_demo
    from soundscape.app.web_classifier import ScorerClassifier
    from soundscape.database import database_url
    from soundscape.infra.process import free_port
    from soundscape.kafka_topics import TOPIC_FIELDS, delete_topics, ensure_topics
    from soundscape.sinks import migrate
    from soundscape.web.accounts import add_user
    from soundscape.web.app import create_app

    name = f"web_{uuid.uuid4().hex[:8]}"
    db = fresh_database(backend, name)
    suffix = uuid.uuid4().hex[:8]
    topics = services.topics.model_copy(update={
        n: f"{getattr(services.topics, n)}.w{suffix}" for n in
        TOPIC_FIELDS})
    settings = services.model_copy(update={
        "postgres": db.postgres, "topics": topics,
        "clips": services.clips.model_copy(update={
            "dir": tmp_path_factory.mktemp("clips"), "group_id": f"clips-{suffix}"}),
        "web": services.web.model_copy(update={"page_size": 10})})
    ensure_topics(settings)
    server = None
    try:
        migrate.upgrade(settings)
        run_demo(settings, stations=2, minutes=2, progress=False, timeout_s=300)
        password = secrets.token_urlsafe(12)
        with psycopg.connect(database_url(settings, "owner"), autocommit=True) as conn:
            add_user(conn, "ada", password, "reviewer")
        port = free_port()
        app = create_app(settings, ScorerClassifier(settings))  # the demo bundle
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield WebApp(url, settings, "ada", password)
    finally:
        if server is not None:
            server.should_exit = True
        delete_topics(settings, topics.all_names())
        drop_database(backend, name)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium from Debian's packages through its chromedriver."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "Debian's chromium and chromium-driver: `bash infra/setup.sh --docker`"
        if os.environ.get("CI"):
            pytest.fail(f"no browser for the web tests: {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str) -> None:  # noqa: ANN001
    """Saved where SOUNDSCAPE_SCREENSHOTS points (docs/web/ when making the docs)."""
    folder = os.environ.get("SOUNDSCAPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))

