"""Which keyword a model's forward takes its key/value cache under.

transformers 5.24 renamed `past_key_values` to `cache` (the old name is deprecated, removed in 5.40);
the declared floor (4.56) knows only `past_key_values`. Callers ask once per model and pass the cache
under the name the installed version expects, so neither version warns nor silently runs without it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

CACHE_KWARGS = ("cache", "past_key_values")  # newest first


def cache_kwarg(forward: Callable[..., Any]) -> str | None:
    """The name under which `forward` accepts a KV cache, or None when it takes none."""
    params = inspect.signature(forward).parameters
    return next((name for name in CACHE_KWARGS if name in params), None)


def model_cache_kwarg(model: Any) -> str:
    """`cache_kwarg` of a causal LM's forward, looking through DDP and PEFT wrappers (whose own forward
    takes `**kwargs`). A model that names no cache argument gets the old name, which every version reads."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    get_base = getattr(inner, "get_base_model", None)  # peft.PeftModel
    if callable(get_base):
        inner = get_base()
    return cache_kwarg(inner.forward) or "past_key_values"
