"""The model registry: every policy and reward model version, and exactly which comparisons trained it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime, utcnow
from app.models.enums import PromotionState, VersionKind, VersionRole, VersionStatus, sql_in


class ModelVersion(Base):
    """A trained (or base) model of one project, with its lineage, metrics and data snapshot."""

    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(sql_in("kind", VersionKind), name="kind"),
        CheckConstraint(sql_in("status", VersionStatus), name="status"),
        CheckConstraint("promotion_state IS NULL OR " + sql_in("promotion_state", PromotionState),
                        name="promotion_state"),
        CheckConstraint("role IS NULL OR " + sql_in("role", VersionRole), name="role"),
        Index("ix_model_versions_project_id_kind_status", "project_id", "kind", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    base_model: Mapped[str] = mapped_column(String(500))
    checkpoint_path: Mapped[str | None] = mapped_column(String(1000))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    # PPO/RLOO: the frozen policy the KL is measured against (the SFT version by default), and the
    # reward model the rollouts were scored by. None for reward models and base versions.
    reference_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    reward_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.TRAINING)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    training_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_watermark: Mapped[int | None] = mapped_column(BigId)
    data_snapshot_hash: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Promotion by people (app.loop.promotion): a policy the training gates promote is "provisional" until
    # human rankings that show it beside `incumbent_version_id` (the version it replaced) confirm it
    # ("confirmed") or bring the incumbent back ("rolled_back"); "superseded" when another version was
    # activated before people decided. None: not subject to it (reward models, base versions, gates only).
    promotion_state: Mapped[str | None] = mapped_column(String(16))
    promotion_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    incumbent_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    promotion_decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "sft": a policy a `train_sft` job trained on demonstrations; the newest such version is the project's
    # frozen SFT reference (app.loop.service.sft_version). None: any other version.
    role: Mapped[str | None] = mapped_column(String(16))


class ModelVersionComparison(Base):
    """Lineage: comparison `comparison_id` was in the training data of `model_version_id`."""

    __tablename__ = "model_version_comparisons"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    comparison_id: Mapped[int] = mapped_column(
        ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ModelVersionPrompt(Base):
    """Lineage of RL policy versions: prompt `prompt_id` was a rollout prompt of `model_version_id`."""

    __tablename__ = "model_version_prompts"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True, index=True)


class ModelVersionDemonstration(Base):
    """Lineage of SFT policy versions: demonstration `demonstration_id` was in the training data of
    `model_version_id`."""

    __tablename__ = "model_version_demonstrations"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    demonstration_id: Mapped[int] = mapped_column(
        ForeignKey("demonstrations.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class TestSetVersion(Base):
    """One version of a project's fixed reward-model test set (app.registry.service.extend_test_set):
    the prompts that joined in versions 1..`version`, with their human and imported rankings whose
    comparisons have id <= `comparison_watermark`. Versions are only ever appended."""

    __tablename__ = "test_set_versions"
    __test__ = False  # not a pytest test class
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    comparison_watermark: Mapped[int] = mapped_column(BigId)
    prompts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TestSetPrompt(Base):
    """Prompt `prompt_id` is in the project's test set from test-set version `version` on (never removed;
    the loop never samples it, the reward model never trains on it)."""

    __tablename__ = "test_set_prompts"
    __test__ = False  # not a pytest test class
    __table_args__ = (UniqueConstraint("project_id", "prompt_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
