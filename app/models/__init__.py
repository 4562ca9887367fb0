"""ORM tables, one module per aggregate. Importing this package registers every table on `Base.metadata`."""

from app.models.base import Base, utcnow
from app.models.jobs import Job, JobEvent
from app.models.labeling import Assignment, Comparison, Ranking, Slot
from app.models.projects import Project
from app.models.prompts import Completion, ImportRecord, Prompt
from app.models.registry import ModelVersion, ModelVersionComparison, ModelVersionPrompt
from app.models.users import ApiToken, LoginAttempt, User, UserSession

__all__ = [
    "ApiToken",
    "Assignment",
    "Base",
    "Comparison",
    "Completion",
    "ImportRecord",
    "Job",
    "JobEvent",
    "LoginAttempt",
    "ModelVersion",
    "ModelVersionComparison",
    "ModelVersionPrompt",
    "Project",
    "Prompt",
    "Ranking",
    "Slot",
    "User",
    "UserSession",
    "utcnow",
]
