"""Counter-based random numbers for sampling: one stream per (seed, prompt key, sample), one draw per token.

A sampled row's randomness depends only on its own coordinates, never on which other rows share its
batch, how prompts are chunked, or which DDP rank holds it. So the same seed and prompt keys give the same
samples whether a step runs in one process or is sharded over several (the basis of the 2-process
equivalence test), and whatever the generation batch size.

A stream id is 64 bits derived with BLAKE2b from the coordinates; the draw for token t mixes the id with t
through a 32-bit integer finaliser (xor-shift-multiply, run on the device as int64 arithmetic that cannot
overflow), giving a uniform on (0, 1) with 32 bits of resolution. Tokens are then drawn by inverting the
cumulative distribution, which needs one uniform per row instead of one per vocabulary entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # < 2**27, so (x < 2**32) * _MIX < 2**59 fits in int64
_GOLDEN32 = 0x9E3779B1


def stream_ids(seed: int, prompt_keys: Sequence[int], k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(len(prompt_keys) * k, 2) int64 tensor: the two 32-bit halves of each row's stream id, rows grouped by
    prompt (rows [i*k, (i+1)*k) are the k samples of prompt i)."""
    rows = []
    for key in prompt_keys:
        for sample in range(k):
            digest = hashlib.blake2b(f"{seed}:{key}:{sample}".encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            rows.append((value & _MASK32, value >> 32))
    return torch.tensor(rows, dtype=torch.int64, device=device).reshape(-1, 2)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = (((x >> 16) ^ x) * _MIX) & _MASK32
    x = (((x >> 16) ^ x) * _MIX) & _MASK32
    return (x >> 16) ^ x


def uniforms(streams: torch.Tensor, t: int) -> torch.Tensor:
    """One float64 uniform in (0, 1) per row for draw number `t` (t < 2**20) of each row's stream."""
    if not 0 <= t < 2**20:
        raise ValueError(f"draw index {t} out of range")
    bits = _mix32(streams[:, 0] ^ _mix32((streams[:, 1] + t * _GOLDEN32) & _MASK32))
    return (bits.to(torch.float64) + 0.5) / 2.0**32


def draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Token ids drawn from each row of `probs` (rows, vocab) by inverse CDF at the uniforms `u` (rows,).

    Entries with probability 0 (e.g. cut by top-p) are never drawn: the search returns the first index whose
    cumulative mass exceeds u, and a zero entry does not raise the cumulative mass. Sums run in float64.
    """
    cdf = probs.to(torch.float64).cumsum(-1)
    target = (u.to(cdf.device) * cdf[:, -1]).unsqueeze(-1)  # strictly below each row's total mass
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)
