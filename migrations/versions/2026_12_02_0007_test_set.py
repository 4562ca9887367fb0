"""the fixed reward-model test set: versions of a project's held-out prompts, and which prompt joined when

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "test_set_versions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("project_id", BigId, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("comparison_watermark", BigId, nullable=False),
        sa.Column("prompts", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_test_set_versions_project_id_projects"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_set_versions")),
        sa.UniqueConstraint("project_id", "version", name=op.f("uq_test_set_versions_project_id_version")),
    )
    op.create_table(
        "test_set_prompts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("project_id", BigId, nullable=False),
        sa.Column("prompt_id", BigId, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("added_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_test_set_prompts_project_id_projects"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name=op.f("fk_test_set_prompts_prompt_id_prompts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_set_prompts")),
        sa.UniqueConstraint("project_id", "prompt_id", name=op.f("uq_test_set_prompts_project_id_prompt_id")),
    )
    with op.batch_alter_table("test_set_prompts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_test_set_prompts_prompt_id"), ["prompt_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("test_set_prompts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_test_set_prompts_prompt_id"))
    op.drop_table("test_set_prompts")
    op.drop_table("test_set_versions")
