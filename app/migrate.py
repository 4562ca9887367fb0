"""Schema management through Alembic: upgrade to head, check for drift, tell whether the database is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations

_SCRIPT_LOCATION = Path(migrations.__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and at `database_url`."""
    config = Config(str(_SCRIPT_LOCATION / "alembic.ini"))
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    # ConfigParser interpolates '%'; escape it so URL-encoded passwords survive.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (default head)."""
    command.upgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise if the ORM models differ from what the migrations create (`alembic check`)."""
    command.check(alembic_config(database_url))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def is_at_head(engine: Engine) -> bool:
    """True when the database's recorded revision is the newest migration."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current is not None and current == head_revision()
