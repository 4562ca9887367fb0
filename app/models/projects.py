"""Projects: the unit of labeling, with its K range, redundancy, lease and free-form settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime, utcnow


class Project(Base):
    """A labeling project. `settings` holds sampling, training, flags and scheduler options (see projects.schemas)."""

    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("k_min >= 2 AND k_max >= k_min AND k_max <= 16", name="k_range"),
        CheckConstraint("annotations_per_prompt >= 1", name="annotations_per_prompt"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    guidelines: Mapped[str] = mapped_column(Text, default="")
    k_min: Mapped[int] = mapped_column(Integer, default=4)
    k_max: Mapped[int] = mapped_column(Integer, default=9)
    annotations_per_prompt: Mapped[int] = mapped_column(Integer, default=1)
    lease_minutes: Mapped[int] = mapped_column(Integer, default=30)
    allow_fewer_than_k_min: Mapped[bool] = mapped_column(Boolean, default=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
