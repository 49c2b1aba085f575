"""The web app: listen to detections, see their spectrograms, review them; a JSON API.

Server-rendered pages (Jinja2, a little plain JavaScript, no build chain) and
`/api/v1/...` beside them, documented at `/docs` (FastAPI's OpenAPI). Reading is open
when `web.public_read` (the default, for a localhost app); reviewing needs a logged-in
reviewer or admin, and every state-changing request a CSRF token bound to the session.
The app reads and writes as the web role: SELECT, and INSERT on reviews only.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and the
# dependency aliases (Db, Reader, ...) live in create_app, not in this module's globals.
import contextlib
import csv
import io
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field

from soundscape.audio_codec import AudioDecodeError, decode
from soundscape.clip_store import clips_dir, resolve
from soundscape.database import database_url
from soundscape.logs import get_logger
from soundscape.settings import Settings
from soundscape.web import accounts, queries
from soundscape.web import classify as uploads_
from soundscape.web.classify import Classifier, UploadError
from soundscape.web.db import ConnectionPool
from soundscape.web.queries import REVIEW_STATES, Cursor, Filters, NotFound
from soundscape.web.spectrogram import spectrogram_png

log = get_logger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
SESSION_COOKIE = "soundscape_session"
LOGIN_COOKIE = "soundscape_login"
CSV_LIMIT = 100_000

REQUESTS = Histogram("soundscape_web_request_seconds", "Server time per request, by route",
                     ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5))
REVIEWS = Counter("soundscape_web_reviews_total", "Reviews stored, by verdict", ["verdict"])
REFUSED = Counter("soundscape_web_refused_total", "Requests refused, by reason", ["reason"])
CLASSIFIED = Counter("soundscape_web_classified_chunks_total", "Uploaded 10 s chunks scored")


OVERVIEW_CACHE_S = 60.0


class TtlCache:
    """One value per key, recomputed when older than `ttl_s` (thread-safe enough: two
    requests may both compute, neither sees a torn value)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        found = self._values.get(key)
        if found is not None and now - found[0] < self.ttl_s:
            return found[1]
        value = compute()
        self._values = {key: (now, value)}  # the newest key only: the overview's
        return value


@dataclass
class WebState:
    settings: Settings
    pool: ConnectionPool
    secret: bytes
    root: Path


class ReviewIn(BaseModel):
    chunk_id: uuid.UUID
    label: str = Field(min_length=1, max_length=200)
    verdict: queries.Verdict
    new_label: str | None = Field(None, max_length=200)
    comment: str | None = Field(None, max_length=2000)


def create_app(settings: Settings, classifier: Classifier | None = None,
               schema: str | None = None) -> FastAPI:
    """The app on `settings`' database and clips; `classifier` scores uploads (none: the
    classify endpoint answers 503); `schema` other than the default (the benchmark's)."""
    if schema is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ValueError(f"bad schema name {schema!r}")
    state = WebState(settings, ConnectionPool(database_url(settings, "web"), schema=schema),
                     accounts.load_secret(settings.state_dir / "web" / "secret.key"),
                     clips_dir(settings))
    uploads = settings.state_dir / "web" / "uploads"
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        state.pool.close()

    app = FastAPI(title="Soundscape", version="1", docs_url="/docs", redoc_url=None,
                  lifespan=lifespan,
                  description="Detections, stations and reviews of a Soundscape network.")
    templates = Jinja2Templates(directory=str(TEMPLATES))
    # A day of detections per species is one pass over a day of rows (about 200 ms at a
    # million): the overview reuses it for a minute.
    species_cache = TtlCache(OVERVIEW_CACHE_S)
    templates.env.filters["when"] = _when
    templates.env.filters["pct"] = lambda p: f"{100 * float(p):.0f} %"

    @app.middleware("http")
    async def timed(request: Request, call_next: Callable[..., Any]) -> Response:
        began = time.perf_counter()
        if request.method == "POST" and request.url.path == "/api/v1/classify":
            # Refused before a byte of the body is read: the form parser would spool it all.
            declared = request.headers.get("content-length")
            limit = settings.web.max_upload_bytes + 64 * 1024  # the form's own fields
            if declared is None or not declared.isdigit():
                REFUSED.labels("upload_411").inc()
                return JSONResponse({"detail": "uploads need a Content-Length"}, 411)
            if int(declared) > limit:
                REFUSED.labels("upload_413").inc()
                return JSONResponse({"detail": f"the upload is over the "
                                               f"{settings.web.max_upload_bytes:,}-byte limit "
                                               "(web.max_upload_bytes)"}, 413,
                                    headers={"Connection": "close"})
        response: Response = await call_next(request)
        route = request.scope.get("route")
        took = time.perf_counter() - began
        REQUESTS.labels(getattr(route, "path", "other")).observe(took)
        response.headers["Server-Timing"] = f"app;dur={took * 1e3:.2f}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    # ---- who is asking ------------------------------------------------------------------
    def db() -> Iterator[psycopg.Connection[Any]]:
        try:
            with state.pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise HTTPException(503, f"the database is unavailable: {str(exc)[:120]}") from exc

    Db = Annotated[psycopg.Connection[Any], Depends(db)]

    def viewer(request: Request, conn: Db) -> accounts.User | None:
        name = accounts.session_user(state.secret, request.cookies.get(SESSION_COOKIE))
        return accounts.current_user(conn, name) if name else None

    Viewer = Annotated[accounts.User | None, Depends(viewer)]

    def reader(user: Viewer) -> accounts.User | None:
        if user is None and not settings.web.public_read:
            raise HTTPException(401, "log in to read (web.public_read is off)")
        return user

    Reader = Annotated[accounts.User | None, Depends(reader)]

    def reviewer(request: Request, user: Viewer) -> accounts.User:
        if user is None:
            REFUSED.labels("not_logged_in").inc()
            raise HTTPException(401, "log in to review")
        token = request.headers.get("X-CSRF-Token")
        if not accounts.csrf_ok(state.secret, request.cookies.get(SESSION_COOKIE), token):
            REFUSED.labels("csrf").inc()
            raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token)")
        return user

    def page(request: Request, name: str, user: accounts.User | None,
             status: int = 200, **context: Any) -> HTMLResponse:
        session = request.cookies.get(SESSION_COOKIE)
        csrf = accounts.csrf_token(state.secret, session) if user and session else ""
        return templates.TemplateResponse(request, name, {"user": user, "csrf": csrf, **context},
                                          status_code=status)

    # ---- pages -----------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview(request: Request, conn: Db, user: Reader) -> HTMLResponse:
        newest = conn.execute("SELECT max(chunk_start) FROM chunks").fetchone()
        since = (newest[0] if newest and newest[0] else datetime.now(UTC)) - timedelta(days=1)
        since = since.replace(second=0, microsecond=0)
        return page(request, "overview.html", user, stations=queries.stations(conn),
                    species=species_cache.get(since, lambda: queries.species_counts(conn, since)),
                    since=since, alerts=queries.recent_alerts(conn))

    @app.get("/detections", response_class=HTMLResponse, include_in_schema=False)
    def detections_page(request: Request, conn: Db, user: Reader,
                        filters: Annotated[Filters, Depends(_filters)],
                        after: str | None = None) -> HTMLResponse:
        found = queries.detections(conn, filters, settings.web.page_size, _cursor(after))
        return page(request, "detections.html", user, page=found, filters=filters,
                    states=REVIEW_STATES, query=_query_without_after(request),
                    next_after=found.next.encode() if found.next else None)

    @app.get("/detections.csv", include_in_schema=False)
    def detections_csv(conn: Db, user: Reader,
                       filters: Annotated[Filters, Depends(_filters)]) -> StreamingResponse:
        return StreamingResponse(_csv_rows(conn, filters), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          'attachment; filename="detections.csv"'})

    @app.get("/chunks/{chunk_id}", response_class=HTMLResponse, include_in_schema=False)
    def chunk_page(request: Request, chunk_id: uuid.UUID, conn: Db, user: Reader,
                   saved: int | None = None) -> HTMLResponse:
        try:
            found = queries.chunk(conn, chunk_id)
        except NotFound as exc:
            return page(request, "error.html", user, status=404, message=str(exc))
        return page(request, "chunk.html", user, chunk=found, labels=queries.labels(conn),
                    saved=saved)

    @app.get("/species/{label:path}", response_class=HTMLResponse, include_in_schema=False)
    def species_page(request: Request, label: str, conn: Db, user: Reader) -> HTMLResponse:
        try:
            found = queries.species(conn, label)
        except NotFound as exc:
            return page(request, "error.html", user, status=404, message=str(exc))
        return page(request, "species.html", user, species=found)

    @app.get("/classify", response_class=HTMLResponse, include_in_schema=False)
    def classify_page(request: Request, user: Viewer) -> HTMLResponse:
        return page(request, "classify.html", user,
                    max_mb=settings.web.max_upload_bytes / 1e6,
                    max_minutes=settings.web.max_upload_seconds / 60)

    @app.post("/chunks/{chunk_id}/reviews", include_in_schema=False)
    def review_form(request: Request, chunk_id: uuid.UUID, conn: Db, user: Viewer,
                    label: Annotated[str, Form(max_length=200)],
                    verdict: Annotated[str, Form()],
                    csrf: Annotated[str, Form()] = "",
                    new_label: Annotated[str, Form(max_length=200)] = "",
                    comment: Annotated[str, Form(max_length=2000)] = "") -> Response:
        if user is None:
            REFUSED.labels("not_logged_in").inc()
            return RedirectResponse(f"/login?next=/chunks/{chunk_id}", 303)
        if not accounts.csrf_ok(state.secret, request.cookies.get(SESSION_COOKIE), csrf):
            REFUSED.labels("csrf").inc()
            return page(request, "error.html", user, status=403,
                        message="this form expired or did not come from this site: reload "
                                "the page and try again")
        try:
            review_id = queries.add_review(conn, chunk_id, label, verdict,  # type: ignore[arg-type]
                                           user.name, new_label or None, comment or None)
        except NotFound as exc:
            return page(request, "error.html", user, status=404, message=str(exc))
        except ValueError as exc:
            return page(request, "error.html", user, status=422, message=str(exc))
        REVIEWS.labels(verdict).inc()
        return RedirectResponse(f"/chunks/{chunk_id}?saved={review_id}", 303)

    # ---- audio and pictures ------------------------------------------------------------------
    @app.get("/clips/{chunk_id}", include_in_schema=False)
    def clip_audio(chunk_id: uuid.UUID, conn: Db, user: Reader) -> Response:
        path, codec = _clip_file(conn, chunk_id)
        return FileResponse(path, media_type=f"audio/{'flac' if codec == 'flac' else 'wav'}",
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/clips/{chunk_id}/spectrogram.png", include_in_schema=False)
    def clip_spectrogram(chunk_id: uuid.UUID, conn: Db, user: Reader,
                         label: str | None = None) -> Response:
        path, codec = _clip_file(conn, chunk_id)
        try:
            audio = decode(path.read_bytes(), codec)  # type: ignore[arg-type]
        except AudioDecodeError as exc:
            raise HTTPException(500, f"the kept clip does not decode: {exc}") from exc
        window = None
        if label:
            row = conn.execute("SELECT window_start_s, window_end_s FROM detections d JOIN clips"
                               " c USING (chunk_start, chunk_id) WHERE chunk_id = %s AND"
                               " label = %s", (chunk_id, label)).fetchone()
            if row and row[0] is not None:
                window = (float(row[0]), float(row[1]))
        png = spectrogram_png(audio.samples, audio.sample_rate, window, label or "")
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    def _clip_file(conn: psycopg.Connection[Any], chunk_id: uuid.UUID) -> tuple[Path, str]:
        try:
            row = queries.clip(conn, chunk_id)
            path = resolve(state.root, row["path"])
        except (NotFound, ValueError) as exc:
            raise HTTPException(404, str(exc)) from exc
        if not path.is_file():
            raise HTTPException(404, f"the clip of {chunk_id} is missing from {state.root}")
        return path, row["codec"]

    # ---- logging in ----------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, user: Viewer, next: str = "/") -> HTMLResponse:
        nonce = request.cookies.get(LOGIN_COOKIE) or accounts.new_nonce()
        response = page(request, "login.html", user, next=_local(next),
                        login_csrf=accounts.csrf_token(state.secret, nonce))
        _set_cookie(response, LOGIN_COOKIE, nonce, 600)
        return response

    @app.post("/login", include_in_schema=False)
    def login(request: Request, conn: Db,
              username: Annotated[str, Form(max_length=64)],
              password: Annotated[str, Form(max_length=1000)],
              csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
        if not accounts.csrf_ok(state.secret, request.cookies.get(LOGIN_COOKIE), csrf):
            REFUSED.labels("csrf").inc()
            return page(request, "error.html", None, status=403,
                        message="the login form expired: open it again")
        user = accounts.authenticate(conn, username, password)
        if user is None:
            REFUSED.labels("wrong_password").inc()
            log.info("login refused", username=username[:64])
            nonce = request.cookies.get(LOGIN_COOKIE) or ""
            return page(request, "login.html", None, status=401, next=_local(next),
                        error="wrong username or password",
                        login_csrf=accounts.csrf_token(state.secret, nonce))
        log.info("logged in", username=user.name, role=user.role)
        response = RedirectResponse(_local(next), 303)
        token = accounts.session_token(state.secret, user, settings.web.session_hours)
        _set_cookie(response, SESSION_COOKIE, token, int(settings.web.session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    def _set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                            secure=settings.web.secure_cookies)

    # ---- the JSON API ----------------------------------------------------------------------------
    @app.get("/api/v1/detections", tags=["detections"])
    def api_detections(conn: Db, user: Reader, filters: Annotated[Filters, Depends(_filters)],
                       after: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Detections newest first, filtered; page on with `after` = the `next` returned."""
        found = queries.detections(conn, filters, limit, _cursor(after))
        return {"detections": [_jsonable(r) for r in found.rows],
                "next": found.next.encode() if found.next else None}

    @app.get("/api/v1/stations", tags=["stations"])
    def api_stations(conn: Db, user: Reader) -> dict[str, Any]:
        """Every station, its last heartbeat and today's detections."""
        return {"stations": [_jsonable(r) for r in queries.stations(conn)]}

    @app.get("/api/v1/session", tags=["reviews"])
    def api_session(request: Request, user: Viewer) -> dict[str, Any]:
        """Who is logged in, and the CSRF token a POST from this session must send."""
        session = request.cookies.get(SESSION_COOKIE)
        if user is None or session is None:
            return {"user": None, "csrf_token": None}
        return {"user": user.name, "role": user.role,
                "csrf_token": accounts.csrf_token(state.secret, session)}

    @app.post("/api/v1/reviews", status_code=201, tags=["reviews"])
    def api_review(review: ReviewIn, conn: Db,
                   user: Annotated[accounts.User, Depends(reviewer)]) -> dict[str, Any]:
        """Confirm, reject or relabel a detection (logged in; X-CSRF-Token header)."""
        try:
            review_id = queries.add_review(conn, review.chunk_id, review.label, review.verdict,
                                           user.name, review.new_label, review.comment)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        REVIEWS.labels(review.verdict).inc()
        return {"review_id": review_id, "reviewer": user.name}

    @app.post("/api/v1/classify", tags=["classify"])
    def api_classify(request: Request,
                     user: Annotated[accounts.User, Depends(reviewer)],
                     file: Annotated[UploadFile, File(description="a recording: WAV, FLAC, "
                                                                  "Ogg, MP3; any length")]
                     ) -> dict[str, Any]:
        """Score an uploaded recording: split into 10 s chunks, each scored by the active
        bundle; per chunk the top labels, those above threshold, and a spectrogram URL
        (kept an hour). Logged in, X-CSRF-Token header."""
        if classifier is None:
            raise HTTPException(503, "no model is configured for uploads")
        uploads_.forget_old(uploads)
        upload_id = uploads_.new_upload_id()
        folder = uploads / upload_id
        folder.mkdir(parents=True, exist_ok=True)
        received = folder / "upload"
        began = time.perf_counter()
        try:
            size = uploads_.receive(file.file, received, settings.web.max_upload_bytes)
            mono, rate = uploads_.decode_upload(received, settings.web.max_upload_seconds)
            chunks = uploads_.split(mono, rate, classifier.sample_rate)
        except UploadError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            REFUSED.labels(f"upload_{exc.status}").inc()
            raise HTTPException(exc.status, str(exc)) from None
        finally:
            received.unlink(missing_ok=True)
        results = classifier.classify(chunks)
        uploads_.keep_chunks(folder, chunks, classifier.sample_rate)
        seconds = time.perf_counter() - began
        CLASSIFIED.inc(len(chunks))
        log.info("upload classified", user=user.name, bytes=size, chunks=len(chunks),
                 seconds=round(seconds, 2))
        return {
            "upload_id": upload_id, "bundle_version": classifier.version,
            "duration_s": round(mono.size / rate, 3), "sample_rate": classifier.sample_rate,
            "seconds": round(seconds, 3),
            "chunks": [{"index": r.index, "start_s": r.start_s, "end_s": r.end_s,
                        "top": [vars(t) for t in r.top],
                        "detections": [vars(d) for d in r.detections],
                        "audio": f"/uploads/{upload_id}/{r.index}",
                        "spectrogram": f"/uploads/{upload_id}/{r.index}/spectrogram.png"}
                       for r in results]}

    @app.get("/uploads/{upload_id}/{index}", include_in_schema=False)
    def upload_audio(upload_id: str, index: int, user: Reader) -> Response:
        return FileResponse(_upload_file(upload_id, index), media_type="audio/flac")

    @app.get("/uploads/{upload_id}/{index}/spectrogram.png", include_in_schema=False)
    def upload_spectrogram(upload_id: str, index: int, user: Reader) -> Response:
        audio = decode(_upload_file(upload_id, index).read_bytes(), "flac")
        return Response(spectrogram_png(audio.samples, audio.sample_rate), media_type="image/png")

    def _upload_file(upload_id: str, index: int) -> Path:
        try:
            return uploads_.upload_chunk(uploads, upload_id, index)
        except FileNotFoundError:
            raise HTTPException(404, "no such upload chunk (uploads are kept an hour)") from None

    # ---- health ----------------------------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            with state.pool.connection() as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return JSONResponse({"healthy": False, "database": "down",
                                 "error": str(exc)[:200]}, 503)
        return JSONResponse({"healthy": True, "database": "up"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(ValueError)
    def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)[:300]}, 422)

    def _csv_rows(conn: psycopg.Connection[Any], filters: Filters) -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        columns = ["chunk_start", "chunk_id", "station_id", "label", "common_name",
                   "probability", "window_start_s", "window_end_s", "verdict", "new_label",
                   "reviewer", "has_clip"]
        writer.writerow(columns)
        after, sent = None, 0
        while sent < CSV_LIMIT:
            batch = queries.detections(conn, filters, 1000, after)
            for row in batch.rows:
                writer.writerow([row["chunk_start"].isoformat() if c == "chunk_start" else
                                 row.get(c) for c in columns])
            sent += len(batch.rows)
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if batch.next is None:
                return
            after = batch.next

    return app


def _filters(station: str | None = None, species: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             min_confidence: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
             review: str = "any") -> Filters:
    """The list filters, from the query string (empty fields mean no filter)."""
    if review not in REVIEW_STATES:
        raise HTTPException(422, f"review: one of {', '.join(REVIEW_STATES)}")
    return Filters(station or None, species or None, _utc(since), _utc(until), min_confidence,
                   review)  # type: ignore[arg-type]


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _cursor(after: str | None) -> Cursor | None:
    if not after:
        return None
    try:
        return Cursor.decode(after)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def _query_without_after(request: Request) -> str:
    return urlencode([(k, v) for k, v in request.query_params.multi_items()
                      if k != "after" and v])


def _local(target: str) -> str:
    """Only redirect within this site (no //evil.example, no scheme)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else
                str(v) if isinstance(v, uuid.UUID) else v) for k, v in row.items()}
