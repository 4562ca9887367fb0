"""loop rounds: slots and assignments per sampling round, reference/reward version of a policy, rollout lineage

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = "status IN ('active', 'submitted', 'skipped')"


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference_version_id", BigId, nullable=True))
        batch_op.add_column(sa.Column("reward_version_id", BigId, nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_model_versions_reference_version_id_model_versions"),
                                    "model_versions", ["reference_version_id"], ["id"], ondelete="SET NULL")
        batch_op.create_foreign_key(batch_op.f("fk_model_versions_reward_version_id_model_versions"),
                                    "model_versions", ["reward_version_id"], ["id"], ondelete="SET NULL")

    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_slots_prompt_id_slot_index", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_slots_prompt_id_round_slot_index"),
                                          ["prompt_id", "round", "slot_index"])

    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_index("uq_assignments_prompt_annotator_live", postgresql_where=sa.text(LIVE),
                            sqlite_where=sa.text(LIVE))
        batch_op.create_index("uq_assignments_prompt_annotator_live", ["prompt_id", "round", "annotator_id"],
                              unique=True, postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))

    # Until now a prompt had one candidate set, all of one round (0 when uploaded, the sampling policy's
    # index when sampled): its slots and assignments belong to that round.
    op.execute(sa.text("UPDATE slots SET round = COALESCE((SELECT MAX(c.round) FROM completions c "
                       "WHERE c.prompt_id = slots.prompt_id), 0)"))
    op.execute(sa.text("UPDATE assignments SET round = COALESCE((SELECT MAX(c.round) FROM completions c "
                       "WHERE c.prompt_id = assignments.prompt_id), 0)"))

    op.create_table(
        "model_version_prompts",
        sa.Column("model_version_id", BigId, nullable=False),
        sa.Column("prompt_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_model_version_prompts_model_version_id_model_versions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name=op.f("fk_model_version_prompts_prompt_id_prompts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_version_id", "prompt_id", name=op.f("pk_model_version_prompts")),
    )
    with op.batch_alter_table("model_version_prompts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_version_prompts_prompt_id"), ["prompt_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_version_prompts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_version_prompts_prompt_id"))
    op.drop_table("model_version_prompts")

    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index("uq_assignments_prompt_annotator_live", postgresql_where=sa.text(LIVE),
                            sqlite_where=sa.text(LIVE))
        batch_op.create_index("uq_assignments_prompt_annotator_live", ["prompt_id", "annotator_id"], unique=True,
                              postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))
        batch_op.drop_column("round")

    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_slots_prompt_id_round_slot_index"), type_="unique")
        batch_op.create_unique_constraint("uq_slots_prompt_id_slot_index", ["prompt_id", "slot_index"])
        batch_op.drop_column("round")

    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_model_versions_reward_version_id_model_versions"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_model_versions_reference_version_id_model_versions"),
                                 type_="foreignkey")
        batch_op.drop_column("reward_version_id")
        batch_op.drop_column("reference_version_id")
