"""demonstrations as data: annotator-written and imported demonstrations, SFT lineage, the SFT role of a version

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "demonstrations",
        sa.Column("id", BigId, nullable=False),
        sa.Column("prompt_id", BigId, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ranking_id", BigId, nullable=True),
        sa.Column("import_id", BigId, nullable=True),
        sa.Column("annotator_id", BigId, nullable=True),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('annotator', 'imported')", name=op.f("ck_demonstrations_source")),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name=op.f("fk_demonstrations_prompt_id_prompts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ranking_id"], ["rankings.id"], name=op.f("fk_demonstrations_ranking_id_rankings"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name=op.f("fk_demonstrations_import_id_imports"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["annotator_id"], ["users.id"], name=op.f("fk_demonstrations_annotator_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demonstrations")),
        sa.UniqueConstraint("ranking_id", name=op.f("uq_demonstrations_ranking_id")),
    )
    with op.batch_alter_table("demonstrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_demonstrations_prompt_id"), ["prompt_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_demonstrations_import_id"), ["import_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_demonstrations_annotator_id"), ["annotator_id"], unique=False)

    op.create_table(
        "model_version_demonstrations",
        sa.Column("model_version_id", BigId, nullable=False),
        sa.Column("demonstration_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_model_version_demonstrations_model_version_id_model_versions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["demonstration_id"], ["demonstrations.id"],
                                name=op.f("fk_model_version_demonstrations_demonstration_id_demonstrations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_version_id", "demonstration_id", name=op.f("pk_model_version_demonstrations")),
    )
    with op.batch_alter_table("model_version_demonstrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_version_demonstrations_demonstration_id"), ["demonstration_id"],
                              unique=False)

    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(batch_op.f("ck_model_versions_role"), "role IS NULL OR role IN ('sft')")

    # Every demonstration an annotator wrote so far becomes a row, with its ranking's author and time.
    op.execute(
        "INSERT INTO demonstrations (prompt_id, text, source, ranking_id, annotator_id, created_at) "
        "SELECT prompt_id, TRIM(demonstration), 'annotator', id, annotator_id, created_at FROM rankings "
        "WHERE demonstration IS NOT NULL AND TRIM(demonstration) <> '' ORDER BY id"
    )


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_model_versions_role"), type_="check")
        batch_op.drop_column("role")
    with op.batch_alter_table("model_version_demonstrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_version_demonstrations_demonstration_id"))
    op.drop_table("model_version_demonstrations")
    with op.batch_alter_table("demonstrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_demonstrations_annotator_id"))
        batch_op.drop_index(batch_op.f("ix_demonstrations_import_id"))
        batch_op.drop_index(batch_op.f("ix_demonstrations_prompt_id"))
    op.drop_table("demonstrations")
