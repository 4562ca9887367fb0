"""The fixed vocabularies of the ORM's string columns, each defined once: job kinds and statuses, model-version
kinds, statuses, promotion states and roles, account-link kinds.

The columns stay strings. Members are `str`s equal to their values (`JobStatus.QUEUED == "queued"`,
`str(member)` and f-strings give the value), so stored rows, JSON and templates see the plain values."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class JobKind(StrEnum):
    """What a job does; each kind has a typed payload (app.jobs.schemas) and a worker handler (worker.loop)."""

    SAMPLE_COMPLETIONS = "sample_completions"
    TRAIN_REWARD_MODEL = "train_reward_model"
    TRAIN_POLICY = "train_policy"
    SCORE_PROMPTS = "score_prompts"
    TRAIN_SFT = "train_sft"


class JobStatus(StrEnum):
    """Where a job stands: queued → running → succeeded / failed / cancelled (app.jobs.queue)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job a worker holds or will pick up; at most one such job per (project, kind).
ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
# A finished job that did not succeed, which may be retried.
UNSUCCESSFUL_JOB_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED)


class VersionKind(StrEnum):
    """What a model version is: a policy (it writes completions) or a reward model (it scores them)."""

    POLICY = "policy"
    REWARD = "reward"


class VersionStatus(StrEnum):
    """A model version's life: training → candidate (trained) → active (serving) or rejected (app.registry)."""

    TRAINING = "training"
    CANDIDATE = "candidate"
    ACTIVE = "active"
    REJECTED = "rejected"


class PromotionState(StrEnum):
    """Promotion by people (app.loop.promotion): a gate-promoted policy is provisional until human rankings
    confirm it or roll it back; superseded when another version was activated before people decided."""

    PROVISIONAL = "provisional"
    CONFIRMED = "confirmed"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"


class VersionRole(StrEnum):
    """A policy version's special role; "sft": trained by a train_sft job on demonstrations."""

    SFT = "sft"


class LinkKind(StrEnum):
    """A one-time account link: an invitation or a password reset."""

    INVITE = "invite"
    RESET = "reset"


def sql_in(column: str, values: Iterable[str]) -> str:
    """The SQL condition `column IN ('a', 'b')` over `values` (for check constraints and partial indexes)."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"
