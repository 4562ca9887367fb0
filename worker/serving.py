"""`prefloop models serve`: the in-process sampler behind the OpenAI completions protocol.

`POST /v1/completions` (prompt text or a list of texts, n, max_tokens, temperature, top_p, seed) answers
OpenAI-shaped choices (index i*n + j for sample j of prompt i, text, finish_reason "stop" or "length");
`GET /v1/models` lists the served versions. The prompt is continued as sent (the client applies any chat
template, as it would for vLLM). It exists so the HTTP sampling backend can be exercised end to end without
a GPU server, and to serve a version to other tools. One request samples at a time (a lock): it is a test and
small-scale server, not a throughput one.

Generated text is untrusted: it only ever leaves here JSON-encoded.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

MAX_PROMPTS = 64
MAX_ROWS = 1024  # prompts × n sampled in one request


@dataclass
class ServedModel:
    """A loaded policy version: its served name, weights and tokenizer."""

    name: str
    model: Any
    tokenizer: Any
    created: int


class CompletionRequest(BaseModel):
    """The subset of OpenAI's completions request that sampling uses; other fields are ignored."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    model: str = Field(min_length=1, max_length=200)
    prompt: str | list[str] = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=MAX_ROWS)
    max_tokens: int = Field(default=16, ge=1, le=8192)
    temperature: float = Field(default=1.0, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stream: bool = False


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def create_server(models: list[ServedModel]) -> FastAPI:
    """The HTTP app serving `models` by name."""
    from worker.training.sampling import decode_responses, rollout  # lazy: torch is optional

    by_name = {m.name: m for m in models}
    lock = threading.Lock()
    app = FastAPI(title="prefloop sampler", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where}: {first.get('msg')}" if where else str(first.get("msg")))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m.name, "object": "model", "created": m.created,
                                            "owned_by": "prefloop"} for m in models]}

    @app.post("/v1/completions", response_model=None)
    def completions(body: CompletionRequest) -> JSONResponse | dict[str, Any]:
        served = by_name.get(body.model)
        if served is None:
            return _error(404, f"model {body.model!r} is not served here (served: {', '.join(by_name)})",
                          "not_found_error")
        if body.stream:
            return _error(400, "stream: streaming is not supported by this server")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) > MAX_PROMPTS or len(prompts) * body.n > MAX_ROWS:
            return _error(400, f"prompt: at most {MAX_PROMPTS} prompts and {MAX_ROWS} completions per request")
        if any(not p for p in prompts):
            return _error(400, "prompt: an empty prompt cannot be continued")
        with lock:
            try:
                batch = rollout(served.model, served.tokenizer, prompts, body.n, temperature=body.temperature,
                                top_p=body.top_p, max_new_tokens=body.max_tokens,
                                seed=body.seed if body.seed is not None else uuid.uuid4().int >> 65,
                                batch_size=8, use_chat_template=False)
            except ValueError as exc:
                return _error(400, f"prompt: {exc}")
            texts = decode_responses(served.tokenizer, batch)
            finished = batch.has_eos.tolist()
            prompt_tokens = int(batch.prompt_mask[:: body.n].sum())
            completion_tokens = int(batch.response_mask.sum())
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": served.name,
            "choices": [{"index": i, "text": text, "finish_reason": "stop" if done else "length", "logprobs": None}
                        for i, (text, done) in enumerate(zip(texts, finished, strict=True))],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    return app
