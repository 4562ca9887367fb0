"""promotion by people: promotion state, its reason and the incumbent a provisional policy version replaced

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATES = "promotion_state IS NULL OR promotion_state IN ('provisional', 'confirmed', 'rolled_back', 'superseded')"


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("promotion_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("promotion_reason", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("incumbent_version_id", BigId, nullable=True))
        batch_op.add_column(sa.Column("promotion_decided_at", app.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_model_versions_incumbent_version_id_model_versions"),
                                    "model_versions", ["incumbent_version_id"], ["id"], ondelete="SET NULL")
        batch_op.create_check_constraint(batch_op.f("ck_model_versions_promotion_state"), STATES)


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_model_versions_promotion_state"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_model_versions_incumbent_version_id_model_versions"),
                                 type_="foreignkey")
        batch_op.drop_column("promotion_decided_at")
        batch_op.drop_column("incumbent_version_id")
        batch_op.drop_column("promotion_reason")
        batch_op.drop_column("promotion_state")
