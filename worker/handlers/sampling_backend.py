"""Which sampler writes a round's candidates: the in-process one (default) or an OpenAI-compatible server
(`sampling.backend = "openai"`, docs/sampling.md).

Both give the handler the same thing, a function from (prompts, n, prompt keys) to n texts per prompt, so the
handler's planning, attribution and storage do not depend on the backend. For the server, each policy
version is asked for by its served name (`sampling.model`, "{version}" by default); a version the server does
not list is loaded as a LoRA adapter when `sampling.load_lora` is set, and is a clear error otherwise.
Prompts are rendered with the version's own chat template here, so the server continues the same text the
in-process sampler would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from app.loop.service import PolicyDraw
from app.projects.schemas import SamplingSettings
from worker.context import JobFailure
from worker.handlers.common import verified
from worker.remote_sampling import CompletionsClient, Endpoint, SamplingServerError, request_seed

Sampler = Callable[[Sequence[Any], int, Sequence[int]], list[list[str]]]
"""(prompts, n, prompt keys) -> n completions per prompt."""

BATCH_PROMPTS = 8


def in_process(draw: PolicyDraw, sampling: SamplingSettings) -> Sampler:
    """Load the version's weights here and sample with worker.training.sampling."""
    from worker.training.sampling import load_policy, sample_completions  # lazy: torch is optional

    model, tokenizer = load_policy(verified(draw.checkpoint_path))

    def sample(prompts: Sequence[Any], n: int, keys: Sequence[int]) -> list[list[str]]:
        return sample_completions(
            model, tokenizer, list(prompts), n, temperature=sampling.temperature, top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens, seed=sampling.seed, batch_size=BATCH_PROMPTS,
            prompt_keys=list(keys),
        )

    return sample


def served_name(sampling: SamplingSettings, draw: PolicyDraw) -> str:
    """The model name the server knows this version by."""
    return sampling.model.replace("{version}", draw.name)


def open_client(sampling: SamplingSettings, draws: Sequence[PolicyDraw]) -> CompletionsClient:
    """A client for the project's server, after checking that every version of the round gets its own name."""
    names = {served_name(sampling, d) for d in draws}
    if len(names) < len({d.version_id for d in draws}):
        raise JobFailure(f"sampling.model {sampling.model!r} gives the versions of this round "
                         f"({', '.join(sorted({d.name for d in draws}))}) one served name, so their completions "
                         "could not be told apart: use '{version}' in it, or sample one version per round "
                         "(sampling.from_active = sampling.from_sft = 0)", retryable=False)
    api_key = None
    if sampling.api_key_env:
        api_key = os.environ.get(sampling.api_key_env)
        if not api_key:
            raise JobFailure(f"the environment variable {sampling.api_key_env} (sampling.api_key_env) is not set "
                             "in the worker's environment", retryable=False)
    return CompletionsClient(Endpoint(sampling.base_url, api_key=api_key, timeout_s=sampling.timeout_s,
                                      max_retries=sampling.max_retries))


def _ensure_served(client: CompletionsClient, sampling: SamplingSettings, draw: PolicyDraw, name: str) -> None:
    served = client.served_models()
    if served is None or name in served:
        return
    if sampling.load_lora:
        client.load_lora_adapter(name, draw.checkpoint_path)
        return
    raise SamplingServerError(
        f"the sampling server at {client.root} does not serve {name!r} (it serves: "
        f"{', '.join(served) or 'nothing'}); start it with --served-model-name {name} for this version, or set "
        "sampling.load_lora to load versions as LoRA adapters (docs/sampling.md)", retryable=False)


def remote(client: CompletionsClient, draw: PolicyDraw, sampling: SamplingSettings) -> Sampler:
    """Sample this version on the server: make sure it is served, then one request per prompt."""
    from transformers import AutoTokenizer  # lazy: transformers is optional

    from worker.training.sampling import format_prompt  # lazy: torch is optional

    name = served_name(sampling, draw)
    try:
        _ensure_served(client, sampling, draw, name)
    except SamplingServerError as exc:
        raise JobFailure(str(exc), retryable=exc.retryable) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(verified(draw.checkpoint_path)))

    def sample(prompts: Sequence[Any], n: int, keys: Sequence[int]) -> list[list[str]]:
        texts = [format_prompt(tokenizer, p) for p in prompts]
        try:
            return client.complete_all(name, texts, n, [request_seed(sampling.seed, key) for key in keys],
                                       max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                       top_p=sampling.top_p, concurrency=BATCH_PROMPTS)
        except SamplingServerError as exc:
            raise JobFailure(f"sampling {draw.name}: {exc}", retryable=exc.retryable) from exc

    return sample
