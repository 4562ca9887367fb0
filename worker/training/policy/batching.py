"""Batching for policy training: the rollout layout for token lists, reproducible per-step example order,
micro-batch and DDP minibatch slicing, and the response-only forward every algorithm's loss reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from worker.training.policy.common import entropy_from_logits, logprobs_from_logits
from worker.training.sampling import position_ids_from_mask


def pack(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[left-padded prompt | right-padded response] layout (the rollout layout) for given token lists.

    Returns (input_ids, attention_mask, response_mask) with response_mask of shape (rows, response_width).
    """
    p_width = max(len(p) for p in prompts)
    r_width = max(max(len(r) for r in responses), 1)
    n = len(prompts)
    ids = torch.full((n, p_width + r_width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, p_width + r_width), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids[i, p_width - len(p) : p_width] = torch.tensor(list(p), dtype=torch.long)
        attn[i, p_width - len(p) : p_width] = 1
        if r:
            ids[i, p_width : p_width + len(r)] = torch.tensor(list(r), dtype=torch.long)
            attn[i, p_width : p_width + len(r)] = 1
    return ids.to(device), attn.to(device), attn[:, p_width:].to(device)


def encode_completion(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> list[int]:
    """Completion tokens followed by EOS (the model must learn to stop), truncated to `max_tokens`."""
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"][: max_tokens - 1]
    return [*ids, int(tokenizer.eos_token_id)]


def step_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """The global example indices of `step`: epoch-wise seeded permutations, so any step is reproducible."""
    out = []
    for pos in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(perm[offset]))
    return out


def chunks(n: int, size: int | None) -> list[slice]:
    """Contiguous slices of length `size` (None: all of it) covering range(n); none when n is 0."""
    size = size or max(n, 1)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def global_minibatches(local_rows: int, k: int, rank: int, world: int, minibatch_size: int | None,
                       perm: torch.Tensor | None) -> list[torch.Tensor]:
    """This rank's rows of each minibatch of the step's global rollout, as local row indices.

    Rows are grouped by prompt (k per prompt) and prompts are dealt to ranks round-robin (Runtime.local),
    so local row r is global row ((r // k) * world + rank) * k + r % k. Minibatches are consecutive slices
    of `perm` (a permutation of the global rows, the same on every rank; None keeps their order), so N ranks
    together update on exactly the rows one process would; a rank's share of a minibatch may be empty.
    """
    global_rows = local_rows * world
    order = perm if perm is not None else torch.arange(global_rows)
    local_of = torch.full((global_rows,), -1, dtype=torch.long)
    r = torch.arange(local_rows)
    local_of[((r // k) * world + rank) * k + r % k] = r
    shares = []
    for sl in chunks(global_rows, minibatch_size):
        mine = local_of[order[sl]]
        shares.append(mine[mine >= 0])
    return shares


def response_forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_width: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and optionally entropies) of the last `response_width` tokens of each row.

    Only the logits that predict response tokens are materialised (`logits_to_keep`), which matters for
    large vocabularies.
    """
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        logits_to_keep=response_width + 1,
    )
    logits = out.logits[:, -response_width - 1 : -1, :].float() / temperature
    labels = input_ids[:, -response_width:]
    logp = logprobs_from_logits(logits, labels)
    ent = entropy_from_logits(logits).detach() if with_entropy else None
    return logp, ent


