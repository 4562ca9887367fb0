"""`sample_completions`: sample a new round of K candidates for the prompts the round plan chooses
(app.loop.planning: never-ranked first, then uncertain, then least recently sampled), from the round's
policies side by side (the new candidate, the active policy, the SFT version; app.loop.service), and
open the new round's slots. Older completions and their rankings stay.

Prompts are sampled in small batches (each prompt encoded once and its KV cache shared by its samples,
see worker.training.sampling), in process or by an OpenAI-compatible server (`sampling.backend`,
worker.handlers.sampling_backend); `should_stop` is checked between batches. Each sample's randomness is
keyed by its prompt and round, so a retry samples identically and a new round samples afresh.
Everything is written in one transaction at the end, so a crash writes nothing.
"""

from __future__ import annotations

import random
from typing import Any

from app.db import unit_of_work
from app.jobs.schemas import SampleCompletionsPayload
from app.loop import service as loop
from app.projects.service import settings_of
from worker.context import JobContext, JobFailure, JobStopped
from worker.handlers import sampling_backend as backend
from worker.handlers.common import load_project

BATCH_PROMPTS = backend.BATCH_PROMPTS


def storable(text: str) -> str:
    """Generated text as the database can hold it: Postgres text refuses NUL, which a byte-level model
    can emit, so it becomes U+FFFD (the character the decoder already uses for broken bytes)."""
    return text.replace("\x00", "\ufffd")


def sample_key(prompt_id: int, round_: int) -> int:
    """The random-stream key of a prompt's round (round 0 keeps the prompt id, as before rounds existed)."""
    return prompt_id + (round_ << 40)


def run(ctx: JobContext) -> dict[str, Any]:
    """Plan, sample, store and open slots; returns counts and the policy versions used."""
    payload = SampleCompletionsPayload.model_validate(ctx.payload)
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        settings = settings_of(project)
        k = settings.sampling.k or project.k_max
        try:
            draws = loop.sampling_policies(db, project, k, payload.candidate_version_id)
        except loop.LoopError as exc:
            raise JobFailure(str(exc), retryable=False) from exc
        planned = loop.plan_round(db, project, payload.limit, payload.prompt_ids)
    versions = {d.name: d.count for d in draws}
    if not planned:
        return {"prompts": 0, "completions": 0, "prompt_ids": [], "resampled_prompts": 0, "versions": versions}

    sampling = settings.sampling
    client = backend.open_client(sampling, draws) if sampling.backend == "openai" else None
    samples: dict[int, list[tuple[loop.PolicyDraw, str]]] = {p.prompt_id: [] for p in planned}
    total = len(draws) * len(planned)
    done = 0
    try:
        for draw in draws:
            ctx.progress(0.02 + 0.9 * done / total, f"loading {draw.name}")
            sample = backend.in_process(draw, sampling) if client is None else backend.remote(client, draw, sampling)
            for start in range(0, len(planned), BATCH_PROMPTS):
                if ctx.should_stop():
                    raise JobStopped()
                batch = planned[start : start + BATCH_PROMPTS]
                outs = sample([p.prompt for p in batch], draw.count, [sample_key(p.prompt_id, p.round) for p in batch])
                for plan, texts in zip(batch, outs, strict=True):
                    samples[plan.prompt_id] += [(draw, storable(text)) for text in texts]
                done += len(batch)
                ctx.progress(0.02 + 0.9 * done / total, f"{draw.name}: sampled {done}/{total} prompt draws")
            del sample
    finally:
        if client is not None:
            client.close()
    # Positions do not group the versions (the ranking page shuffles anyway, but exports read positions).
    shuffle = random.Random(f"{sampling.seed}:{ctx.job_id}")
    for drawn in samples.values():
        shuffle.shuffle(drawn)

    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        stored = loop.store_round(db, project, planned, samples, ctx.job_id)
    resampled = sum(1 for p in planned if p.round > 0 and p.prompt_id in stored.prompt_ids)
    return {"prompts": len(stored.prompt_ids), "completions": stored.completions, "k": k, "slots": stored.slots,
            "prompt_ids": stored.prompt_ids, "resampled_prompts": resampled, "versions": versions,
            "policy_version_id": draws[0].version_id, "policy_version": draws[0].name,
            "reasons": {reason: sum(1 for p in planned if p.reason == reason) for reason in {p.reason for p in planned}}}
