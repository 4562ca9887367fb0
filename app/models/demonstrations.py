"""Demonstrations: the answer a person would want for a prompt, the training data of the SFT stage."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime, utcnow


class Demonstration(Base):
    """An ideal answer to a prompt: written by an annotator beside a ranking (`ranking_id`, one per ranking)
    or imported from a file (`import_id`)."""

    __tablename__ = "demonstrations"
    __table_args__ = (CheckConstraint("source IN ('annotator', 'imported')", name="source"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    ranking_id: Mapped[int | None] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"), unique=True)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"), index=True)
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
