"""Promotion by people: a policy the training gates promote is provisional until people have ranked it
beside the version it replaced, then the Bradley-Terry leaderboard confirms it or brings the incumbent back.

1. `gate` (called by `train_policy`): the gates (app.registry.service.policy_decision) promote a new
   policy provisionally when `training.confirm_rankings` (M) > 0: it is active, `promotion_state` is
   "provisional" and `incumbent_version_id` names the version it replaced. While it waits, every task's
   candidates include the incumbent (app.loop.service.sampling_policies), and the scheduler starts no new
   training round (app.scheduler.service).
2. `check` (run by the scheduler tick, so neither a route nor a ranking submission pays for it): once M
   human rankings order a completion of each (app.loop.queries.rankings_with_both), one Bradley-Terry fit
   over every human ranking of the project (indirect evidence through SFT counts too) with a bootstrap
   over rankings gives the score difference new - incumbent and its 95 % interval
   (app.quality.stats.leaderboard.head_to_head). A difference >= 0 confirms the version; below 0 people
   prefer the incumbent, which is re-activated, and the new version is rejected ("rolled_back"). The
   interval is written into the reason, which says whether the evidence is clear (the interval excludes
   0) or only a majority of the M rankings. Rankings that tie the two everywhere leave the gates' verdict.
3. `standings`: the leaderboard of every policy version, SFT included; versions nobody has ranked yet
   are listed without a score.

Never commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.loop import queries
from app.models import ModelVersion, Project
from app.models.enums import PromotionState
from app.projects import service as projects
from app.quality import queries as quality_queries
from app.quality.stats.leaderboard import HeadToHead, head_to_head, leaderboard
from app.registry import service as registry

N_BOOTSTRAP = 200
LEVEL = 0.95


@dataclass(frozen=True)
class Awaiting:
    """A provisional policy version and how many of the human rankings it needs it has."""

    version: ModelVersion
    incumbent: ModelVersion | None
    have: int
    need: int

    @property
    def remaining(self) -> int:
        return max(0, self.need - self.have)

    def message(self) -> str:
        """What the loop waits for, in words (the loop page and API)."""
        if self.incumbent is None:
            return f"{self.version.name} is provisional but its incumbent is gone: the next check confirms it"
        if self.remaining > 0:
            return (f"{self.version.name} awaits {self.remaining} more human rankings to confirm "
                    f"({self.have} of {self.need} show it beside {self.incumbent.name})")
        return (f"{self.version.name} has {self.have} human rankings beside {self.incumbent.name}: "
                "the next scheduler tick confirms it or rolls it back")


@dataclass(frozen=True)
class Verdict:
    """People's decision on one provisional version."""

    version_id: int
    version: str
    incumbent: str | None
    state: str
    reason: str


@dataclass(frozen=True)
class Standing:
    """One policy version on the leaderboard (score and interval None until people ranked it)."""

    version: ModelVersion
    score: float | None
    ci_low: float | None
    ci_high: float | None
    n_comparisons: int
    is_sft: bool


def gate(db: Session, project: Project, version: ModelVersion, decision: registry.Decision) -> None:
    """Apply the training gates' decision on a new policy version: rejected, or promoted provisionally
    (directly with `training.confirm_rankings` = 0)."""
    if not decision.promoted:
        registry.apply_decision(db, version, decision)
        return
    registry.promote_provisionally(db, version, decision.reason, projects.settings_of(project).training.confirm_rankings)


def awaiting(db: Session, project: Project) -> Awaiting | None:
    """The project's active policy when it is still provisional, with its human-ranking count."""
    pending = queries.provisional_policies(db, project.id)
    if not pending:
        return None
    version = pending[-1]
    incumbent = registry.find(db, version.incumbent_version_id) if version.incumbent_version_id else None
    have = queries.rankings_with_both(db, project.id, version.id, incumbent.id) if incumbent is not None else 0
    return Awaiting(version, incumbent, have, projects.settings_of(project).training.confirm_rankings)


def _points(x: float) -> str:
    return f"{x:+.0f}"


def decide(head: HeadToHead | None, rankings: int) -> tuple[bool, str]:
    """(confirmed, reason) from the head-to-head of the provisional version (`a`) and its incumbent (`b`)."""
    if head is None or head.a_wins + head.b_wins == 0:
        return True, (f"people ranked the two equal in all {rankings} human rankings that show both; "
                      "the training gates' promotion stands")
    interval = ""
    clear = False
    if head.ci_low is not None and head.ci_high is not None:
        interval = f" [{LEVEL:.0%} interval {_points(head.ci_low)}, {_points(head.ci_high)}]"
        clear = head.ci_low > 0 or head.ci_high < 0
    evidence = (f"Bradley-Terry {_points(head.difference)} points{interval}"
                + (f" ({head.a} ahead in {head.p_a_better:.0%} of {N_BOOTSTRAP} bootstrap refits)"
                   if head.p_a_better is not None else "")
                + f"; {head.a} won {head.a_wins} of {head.a_wins + head.b_wins} direct pairs in {rankings} human "
                "rankings showing both; " + (f"clear at {LEVEL:.0%}" if clear
                                             else f"not clear at {LEVEL:.0%}: decided by the point estimate"))
    if head.difference >= 0:
        return True, f"people prefer {head.a} to {head.b}: {evidence}"
    return False, f"people prefer {head.b} (the incumbent) to {head.a}: {evidence}"


def check(db: Session, project: Project) -> Verdict | None:
    """Confirm or roll back the project's provisional policy once it has its M human rankings."""
    wait = awaiting(db, project)
    if wait is None or wait.remaining > 0:
        return None
    version, incumbent = wait.version, wait.incumbent
    if incumbent is None:
        reason = "confirmed without people: the version it replaced no longer exists"
        registry.confirm_by_people(db, version, reason)
        return Verdict(version.id, version.name, None, PromotionState.CONFIRMED, reason)
    records = quality_queries.load_records(db, project.id)
    head = head_to_head(records, version.name, incumbent.name, n_bootstrap=N_BOOTSTRAP, seed=version.id, level=LEVEL)
    confirmed, reason = decide(head, wait.have)
    if confirmed:
        registry.confirm_by_people(db, version, reason)
    else:
        registry.roll_back_by_people(db, version, incumbent, reason)
    return Verdict(version.id, version.name, incumbent.name, version.promotion_state or "", reason)


def check_all(db: Session) -> list[Verdict]:
    """`check` for every project with a provisional policy (one cheap count each)."""
    verdicts = []
    for project_id in sorted({v.project_id for v in queries.provisional_policies(db)}):
        verdict = check(db, projects.get(db, project_id))
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts


def standings(db: Session, project: Project, n_bootstrap: int = N_BOOTSTRAP) -> list[Standing]:
    """Every finished policy version on the human leaderboard, best first; unranked ones last, oldest first."""
    versions = queries.policy_versions(db, project.id)
    if not versions:
        return []
    rows = {r.name: r for r in leaderboard(quality_queries.load_records(db, project.id), n_bootstrap=n_bootstrap,
                                           level=LEVEL)}
    sft = queries.sft_policy_version(db, project.id)  # the SFT version, as app.loop.service.sft_version
    sft_id = sft.id if sft is not None else versions[0].id
    out = [Standing(v, rows[v.name].score if v.name in rows else None, rows[v.name].ci_low if v.name in rows else None,
                    rows[v.name].ci_high if v.name in rows else None,
                    rows[v.name].n_comparisons if v.name in rows else 0, v.id == sft_id) for v in versions]
    return sorted(out, key=lambda s: (s.score is None, -(s.score or 0.0), s.version.id))
