"""The labeling aggregate: slots (one per required ranking), assignments (leases), rankings and comparisons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime, utcnow

_LIVE_ASSIGNMENT = text("status IN ('active', 'submitted', 'skipped')")


class Slot(Base):
    """One required ranking of one prompt. N annotations per prompt means N slots; claiming a slot is the lock."""

    __tablename__ = "slots"
    __table_args__ = (
        UniqueConstraint("prompt_id", "round", "slot_index"),
        CheckConstraint("status IN ('open', 'leased', 'done')", name="status"),
        Index("ix_slots_project_id_status_priority", "project_id", "status", "priority"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    # The prompt's sampling round whose completions this slot ranks (completions.round); a prompt the
    # loop samples again gets new slots for its new round, and older rounds keep their rankings.
    round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    slot_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="open")
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Assignment(Base):
    """A task handed to one annotator: which completions were shown, in which order, and until when."""

    __tablename__ = "assignments"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'submitted', 'skipped', 'expired')", name="status"),
        # One live assignment per (prompt, round, annotator); expired ones may repeat.
        Index(
            "uq_assignments_prompt_annotator_live",
            "prompt_id",
            "round",
            "annotator_id",
            unique=True,
            postgresql_where=_LIVE_ASSIGNMENT,
            sqlite_where=_LIVE_ASSIGNMENT,
        ),
        Index("ix_assignments_annotator_id_status", "annotator_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    slot_id: Mapped[int | None] = mapped_column(ForeignKey("slots.id", ondelete="SET NULL"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    shown_completion_ids: Mapped[list[int]] = mapped_column(JSON)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    suggestion: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Ranking(Base):
    """One annotator's ordering of the shown completions (1 = best, ties equal), or an imported pair."""

    __tablename__ = "rankings"
    __table_args__ = (
        CheckConstraint("source IN ('human', 'ai', 'imported')", name="source"),
        Index("ix_rankings_project_id_created_at", "project_id", "created_at"),
        Index("ix_rankings_prompt_id", "prompt_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id", ondelete="SET NULL"), unique=True)
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="human")
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"), index=True)
    ranks: Mapped[dict[str, int]] = mapped_column(JSON)
    shown_order: Mapped[list[int]] = mapped_column(JSON)
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    likert: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rationale: Mapped[str] = mapped_column(Text, default="")
    not_rankable: Mapped[bool] = mapped_column(Boolean, default=False)
    demonstration: Mapped[str | None] = mapped_column(Text)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    active_seconds: Mapped[float | None] = mapped_column(Float)
    client_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    payload_hash: Mapped[str] = mapped_column(String(64), default="")
    suggestion_shown: Mapped[bool] = mapped_column(Boolean, default=False)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Pairwise projects: how much better the winner is (0 = about the same, 1 slightly, 2 better, 3 much).
    strength: Mapped[int | None] = mapped_column(Integer)
    # An annotator may change a ranking within the project's edit window: the row then holds the newest
    # version (1 = as first submitted) and each earlier one is kept in ranking_versions.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    revised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RankingVersion(Base):
    """A superseded version of a ranking, exactly as it was before the annotator changed it.

    The current version stays in `rankings` (same id, so every reader sees current data only); its
    comparisons are regenerated, and the old version's content is kept here.
    """

    __tablename__ = "ranking_versions"
    __table_args__ = (UniqueConstraint("ranking_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    ranks: Mapped[dict[str, int]] = mapped_column(JSON)
    strength: Mapped[int | None] = mapped_column(Integer)
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    likert: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rationale: Mapped[str] = mapped_column(Text, default="")
    not_rankable: Mapped[bool] = mapped_column(Boolean, default=False)
    demonstration: Mapped[str | None] = mapped_column(Text)
    payload_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Comparison(Base):
    """One pair from a ranking (winner beat loser by `rank_gap`), or an imported chosen/rejected pair.

    Tied pairs are kept with `is_tie` so nothing the annotator said is lost; exports and training skip them.
    """

    __tablename__ = "comparisons"
    __table_args__ = (
        CheckConstraint("source IN ('ranking', 'imported')", name="source"),
        CheckConstraint("winner_id <> loser_id", name="distinct_pair"),
        Index("ix_comparisons_project_id_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    ranking_id: Mapped[int | None] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"), index=True)
    winner_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"), index=True)
    loser_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"), index=True)
    winner_rank: Mapped[int | None] = mapped_column(Integer)
    loser_rank: Mapped[int | None] = mapped_column(Integer)
    rank_gap: Mapped[int | None] = mapped_column(Integer)
    is_tie: Mapped[bool] = mapped_column(Boolean, default=False)
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="ranking")
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"), index=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The pairwise preference strength of its ranking (exported as `margin` on request); None for rankings.
    strength: Mapped[int | None] = mapped_column(Integer)
