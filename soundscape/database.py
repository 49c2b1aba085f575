"""Where the database is: an external URL from the settings, or the local cluster's."""

from __future__ import annotations

from soundscape.errors import ServiceError
from soundscape.local_services import Role, local_postgres_url
from soundscape.settings import Settings

__all__ = ["Role", "database_url", "sqlalchemy_url"]


def database_url(settings: Settings, role: Role = "writer") -> str:
    """libpq URL for the role: the external URLs if configured, else the local cluster's.

    An external database without a `reader_url` (`owner_url`) serves readers (migrations)
    through `url`.
    """
    pg = settings.postgres
    if pg.url is not None:
        if role == "reader" and pg.reader_url is not None:
            return pg.reader_url.get_secret_value()
        if role == "owner" and pg.owner_url is not None:
            return pg.owner_url.get_secret_value()
        if role == "web" and pg.web_url is not None:
            return pg.web_url.get_secret_value()
        if role == "web" and pg.reader_url is not None:  # reads, but cannot store reviews
            return pg.reader_url.get_secret_value()
        return pg.url.get_secret_value()
    url = local_postgres_url(settings, role)
    if url is None:
        raise ServiceError(
            "no database configured and no local PostgreSQL started by Soundscape",
            hint="run `soundscape infra up`, or set SOUNDSCAPE_POSTGRES__URL",
        )
    return url


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy spells the psycopg 3 driver out in the scheme."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
