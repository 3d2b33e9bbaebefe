"""Opening the store: engine, Alembic migrations to head, and one session scope."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from autotune.errors import StoreError

# Our own version table, so a database shared with Optuna's storage keeps both histories.
VERSION_TABLE = "autotune_alembic_version"


def migrations_dir() -> Path:
    """``alembic/`` in a checkout; shipped as ``autotune.migrations`` in a wheel."""
    checkout = Path(__file__).resolve().parents[2] / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    spec = importlib.util.find_spec("autotune.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError("autotune's migrations are missing from this install; reinstall autotune")
    return Path(list(spec.submodule_search_locations)[0])


def database_url(path: str) -> str:
    return path if "://" in path else f"sqlite:///{Path(path).expanduser()}"


def upgrade(url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url)
    try:
        command.upgrade(config, "head")
    except CommandError as error:
        raise StoreError(
            f"the results database {url} was written by a newer autotune ({error}); "
            "upgrade autotune or point store.path at another file"
        ) from None


@dataclass
class Store:
    engine: Engine
    sessions: sessionmaker[Session]
    url: str

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Commit on success, roll back on error, re-raise database errors as StoreError."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as error:
            session.rollback()
            raise StoreError(f"results database error: {_first_line(error)}; {_fix(error)}") from error
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def _shown(url: str) -> str:
    """The URL without a password: error lines end up in CI logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the configured database"


def _first_line(error: SQLAlchemyError) -> str:
    """The driver's own words, without SQLAlchemy's SQL echo and background link."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _fix(error: SQLAlchemyError) -> str:
    text = str(getattr(error, "orig", None) or error).lower()
    if "not a database" in text:
        return "store.path points at a file that is not an SQLite database; choose another path"
    if ("readonly" in text or "read-only" in text or "permission" in text
            or "unable to open database file" in text):  # SQLite's words for a folder it cannot write
        return "the database or its folder is not writable; fix its permissions or choose another path"
    if "locked" in text:
        return "another process holds the database; wait for it or choose another path"
    return "check store.path (or --store)"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # a watcher can read while the tuner writes
    cursor.close()


def open_store(path: str, *, create: bool = True) -> Store:
    """Open (and migrate) the results database. ``create=False`` for commands that only read
    results a study wrote: a mistyped path then says so instead of leaving an empty database."""
    url = database_url(path)
    if url.startswith("sqlite:///"):
        file = Path(url.removeprefix("sqlite:///"))
        if not create and not file.is_file():
            raise StoreError(f"no results database at {path}; run `autotune tune` first or "
                             "pass --store PATH")
        if not file.parent.is_dir():
            raise StoreError(f"folder for the results database does not exist: {file.parent}; "
                             "create it or change store.path")
    try:
        engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        upgrade(url)
        inspect(engine).get_table_names()
    except SQLAlchemyError as error:
        raise StoreError(f"cannot open the results database {_shown(url)}: "
                         f"{_first_line(error)}; {_fix(error)}") from None
    return Store(engine, sessionmaker(engine, expire_on_commit=False), url)
