"""The HTTP sampling backend: a client for an OpenAI-compatible `/v1/completions` server (vLLM, SGLang, TGI,
llama.cpp, or `prefloop models serve`).

One request per prompt (`n` completions, a `seed` keyed by the prompt, several requests in flight); 5xx, 429, timeouts and lost connections are retried a
bounded number of times with exponential backoff, any other 4xx fails at once with the server's reason. The
answer is validated before use: it must hold exactly n choices per prompt, and name the model that was asked
for, so each completion is attributed to the version that wrote it. Everything the server sends is untrusted
text; error messages quote at most a short, printable excerpt of it.

No database and no torch here: the handler (worker.handlers.sample_completions) does the glue.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_DETAIL = 300
"""Characters of a server's error text quoted in our own messages."""


class SamplingServerError(Exception):
    """The sampling server failed or refused; `retryable` says whether a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the server."""

    base_url: str
    api_key: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 0.5  # first retry waits this long, doubling up to `max_backoff_s`
    max_backoff_s: float = 8.0


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    index: int = Field(ge=0)
    text: str
    finish_reason: str | None = None


class _CompletionsAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    choices: list[_Choice]


class _ModelsAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[dict[str, Any]]


def request_seed(seed: int, prompt_key: int) -> int:
    """The `seed` sent for one prompt: derived from the project's seed and the prompt's round key, so a retried
    job asks for the same samples (on servers that honour `seed`) and a new round for new ones. 31 bits, which
    every server accepts."""
    digest = hashlib.blake2b(f"{seed}:{prompt_key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def excerpt(text: str) -> str:
    """A short, single-line, printable quote of untrusted server text."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return flat if len(flat) <= MAX_DETAIL else flat[:MAX_DETAIL] + "…"


def _reason(response: httpx.Response) -> str:
    """The server's own explanation: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the body."""
    try:
        body = response.json()
    except ValueError:
        return excerpt(response.text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return excerpt(error["message"])
        if isinstance(error, str):
            return excerpt(error)
        if "detail" in body:
            return excerpt(str(body["detail"]))
    return excerpt(str(body))


class CompletionsClient:
    """A client of one OpenAI-compatible server. Use as a context manager (it owns an httpx.Client)."""

    def __init__(self, endpoint: Endpoint, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint
        self.root = endpoint.base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._http = httpx.Client(timeout=endpoint.timeout_s, headers=headers, transport=transport)
        self._sleep = sleep

    def __enter__(self) -> CompletionsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """One API call with bounded retries; returns a 2xx response or raises SamplingServerError."""
        url = self.root + path
        attempts = self.endpoint.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                self._sleep(min(self.endpoint.backoff_s * 2 ** (attempt - 1), self.endpoint.max_backoff_s))
            try:
                response = self._http.request(method, url, json=body)
            except httpx.TimeoutException:
                problem = f"did not answer within {self.endpoint.timeout_s:g} s"
                continue
            except httpx.TransportError as exc:
                problem = f"could not be reached ({type(exc).__name__}: {excerpt(str(exc))})"
                continue
            if response.is_success:
                return response
            if response.status_code >= 500 or response.status_code == 429:
                problem = f"answered {response.status_code}: {_reason(response)}"
                continue
            raise SamplingServerError(f"the sampling server refused {method} {url} with {response.status_code}: "
                                      f"{_reason(response)}", retryable=False)
        raise SamplingServerError(f"the sampling server at {url} {problem} "
                                  f"({attempts} attempt{'s' if attempts > 1 else ''}; sampling.timeout_s, "
                                  "sampling.max_retries)", retryable=True)

    def served_models(self) -> list[str] | None:
        """The model names the server serves (`GET /models`); None when it does not list them."""
        try:
            response = self._call("GET", "/models")
        except SamplingServerError as exc:
            if exc.retryable:
                raise
            return None
        try:
            listed = _ModelsAnswer.model_validate_json(response.content)
        except ValidationError:
            return None
        return [str(m["id"]) for m in listed.data if isinstance(m.get("id"), str)]

    def load_lora_adapter(self, name: str, path: str) -> None:
        """Ask the server to load a LoRA adapter under `name` (vLLM's runtime adapter loading)."""
        self._call("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path})

    def complete(self, model: str, prompt: str, n: int, *, max_tokens: int, temperature: float,
                 top_p: float, seed: int | None = None) -> list[str]:
        """`n` completions of one prompt, from one request (`seed` keys its randomness on servers that honour
        it)."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, "n": n, "max_tokens": max_tokens,
                                "temperature": temperature, "top_p": top_p}
        if seed is not None:
            body["seed"] = seed
        response = self._call("POST", "/completions", body)
        try:
            answer = _CompletionsAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            raise SamplingServerError(f"the sampling server at {self.root} sent a completions answer of the wrong "
                                      f"shape ({exc.error_count()} problem(s), first: "
                                      f"{excerpt(str(exc.errors()[0]['msg']))})", retryable=False) from exc
        if answer.model is not None and answer.model != model:
            raise SamplingServerError(f"asked the sampling server for model {model!r} but it answered as "
                                      f"{excerpt(answer.model)!r}, so its completions cannot be attributed "
                                      "(serve each version under its own name: docs/sampling.md)", retryable=False)
        indices = sorted(c.index for c in answer.choices)
        if indices != list(range(n)):
            raise SamplingServerError(f"the sampling server sent {len(answer.choices)} choice(s) for n={n} "
                                      f"(indices {excerpt(str(indices[:20]))})", retryable=False)
        by_index = {c.index: c.text for c in answer.choices}
        return [by_index[j] for j in range(n)]

    def complete_all(self, model: str, prompts: Sequence[str], n: int, seeds: Sequence[int | None], *,
                     max_tokens: int, temperature: float, top_p: float, concurrency: int = 8) -> list[list[str]]:
        """`complete` for each prompt, `concurrency` requests in flight (servers batch concurrent requests);
        one list of n texts per prompt, in order. The first failure is raised."""
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        if not prompts:
            return []

        def one(i: int) -> list[str]:
            return self.complete(model, prompts[i], n, max_tokens=max_tokens, temperature=temperature,
                                 top_p=top_p, seed=seeds[i])

        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(prompts)))) as pool:
            return list(pool.map(one, range(len(prompts))))
