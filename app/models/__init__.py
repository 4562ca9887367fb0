"""ORM tables, one module per aggregate. Importing this package registers every table on `Base.metadata`."""

from app.models.base import Base, utcnow
from app.models.demonstrations import Demonstration
from app.models.jobs import Job, JobEvent
from app.models.labeling import Assignment, Comparison, Ranking, RankingVersion, Slot
from app.models.members import ProjectMember
from app.models.projects import Project
from app.models.prompts import Completion, ImportRecord, Prompt
from app.models.registry import (
    ModelVersion,
    ModelVersionComparison,
    ModelVersionDemonstration,
    ModelVersionPrompt,
    TestSetPrompt,
    TestSetVersion,
)
from app.models.users import AccountLink, ApiToken, LoginAttempt, User, UserSession

__all__ = [
    "AccountLink",
    "ApiToken",
    "Assignment",
    "Base",
    "Comparison",
    "Completion",
    "Demonstration",
    "ImportRecord",
    "Job",
    "JobEvent",
    "LoginAttempt",
    "ModelVersion",
    "ModelVersionComparison",
    "ModelVersionDemonstration",
    "ModelVersionPrompt",
    "Project",
    "ProjectMember",
    "Prompt",
    "Ranking",
    "RankingVersion",
    "Slot",
    "TestSetPrompt",
    "TestSetVersion",
    "User",
    "UserSession",
    "utcnow",
]
