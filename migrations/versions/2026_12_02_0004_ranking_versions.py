"""ranking versions and pairwise strength: edits within a window keep the superseded version; preference strength

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("rankings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("strength", sa.Integer(), nullable=True))
        # Every ranking stored so far is its first (and only) version.
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("revised_at", app.models.base.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("strength", sa.Integer(), nullable=True))

    op.create_table(
        "ranking_versions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("ranking_id", BigId, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ranks", sa.JSON(), nullable=False),
        sa.Column("strength", sa.Integer(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("likert", sa.JSON(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("not_rankable", sa.Boolean(), nullable=False),
        sa.Column("demonstration", sa.Text(), nullable=True),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ranking_id"], ["rankings.id"], name=op.f("fk_ranking_versions_ranking_id_rankings"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ranking_versions")),
        sa.UniqueConstraint("ranking_id", "version", name=op.f("uq_ranking_versions_ranking_id_version")),
    )


def downgrade() -> None:
    op.drop_table("ranking_versions")
    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.drop_column("strength")
    with op.batch_alter_table("rankings", schema=None) as batch_op:
        batch_op.drop_column("revised_at")
        batch_op.drop_column("version")
        batch_op.drop_column("strength")
