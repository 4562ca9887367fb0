"""What `/readyz` checks: the database answers and its schema is at the migrations' head."""

from __future__ import annotations

from sqlalchemy import Engine

from app.health import queries
from app.migrate import is_at_head


def database_at_head(engine: Engine) -> bool:
    """Whether the schema is at head, after one round trip; SQLAlchemyError when the database is unreachable."""
    with engine.connect() as conn:
        queries.ping(conn)
    return is_at_head(engine)
