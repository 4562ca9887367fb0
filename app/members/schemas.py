"""Input shapes of membership management."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MemberIn(BaseModel):
    email: str = Field(min_length=3, max_length=320, description="e-mail of an existing annotator account")
