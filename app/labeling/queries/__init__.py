"""Every database read and write of the labeling feature, one module per concern:
claims and leases (claims), rankings and their comparisons (rankings), slot rows (slots) and the
progress counts (progress). Callers import this package; the names below are its interface."""

from __future__ import annotations

from app.labeling.queries.claims import (
    LIVE_STATUSES,
    add,
    assignment,
    claim_slot,
    extend_slot,
    live_after_expiring,
    lock_annotator,
    other_live_on_prompt,
    own_assignment_with_project,
    project_locking_annotator,
    prompt_with_completions,
    release_slot,
    take_slot,
)
from app.labeling.queries.progress import (
    annotator_ranking_counts,
    comparisons_of,
    display_names,
    human_ranking_times,
    latest_rankings,
    prompt_states,
    ranking_times_since,
    slot_counts,
)
from app.labeling.queries.rankings import (
    add_comparisons,
    comparison_count,
    delete_comparisons,
    highest_training_watermark,
    hold_back_watermarks,
    latest_ranking,
    ranking_for,
    rankings_since,
    trained_comparison_ids,
    version_hashes,
)
from app.labeling.queries.slots import (
    eligible_prompts,
    insert_slots,
    set_open_priority,
)

__all__ = [
    "LIVE_STATUSES",
    "add",
    "add_comparisons",
    "annotator_ranking_counts",
    "assignment",
    "claim_slot",
    "comparison_count",
    "comparisons_of",
    "delete_comparisons",
    "display_names",
    "eligible_prompts",
    "extend_slot",
    "highest_training_watermark",
    "hold_back_watermarks",
    "human_ranking_times",
    "insert_slots",
    "latest_ranking",
    "latest_rankings",
    "live_after_expiring",
    "lock_annotator",
    "other_live_on_prompt",
    "own_assignment_with_project",
    "project_locking_annotator",
    "prompt_states",
    "prompt_with_completions",
    "ranking_for",
    "ranking_times_since",
    "rankings_since",
    "release_slot",
    "set_open_priority",
    "slot_counts",
    "take_slot",
    "trained_comparison_ids",
    "version_hashes",
]
