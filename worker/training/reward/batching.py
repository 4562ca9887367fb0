"""Tokenizing ranking groups once and packing them into token-budgeted micro-batches.

A micro-batch always holds whole groups (every completion of a prompt forwarded together, once), and
its padded size (sequences x longest sequence) stays under the token budget so long completions do not
run out of memory; a single group over budget goes alone.

With prefix sharing, the K token sequences of a group are split into the longest token prefix they all
share (the prompt, found on the token ids themselves, so tokenisation is unchanged) and K suffixes: the
model forwards the prefix once per group and each suffix on top of it (worker.training.reward.model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from worker.training.groups import RankingGroup, render_prompt


@dataclass
class EncodedGroup:
    """A ranking group as token ids: one list per completion, plus its non-tied pairs and weight."""

    input_ids: list[list[int]]
    pairs: list[tuple[int, int, int]]  # (winner, loser, rank gap) as completion indices
    weight: float

    @property
    def max_len(self) -> int:
        return max(len(x) for x in self.input_ids)

    @property
    def n_tokens(self) -> int:
        return sum(len(x) for x in self.input_ids)

    @cached_property
    def shared_prefix(self) -> int:
        """Tokens all completions share at the start (`shared_prefix_length`); measured once per group."""
        return shared_prefix_length(self.input_ids)


@dataclass
class MicroBatch:
    """Padded inputs of some whole groups plus the pair index tensors the K-wise loss needs."""

    input_ids: torch.Tensor  # [N, T]
    attention_mask: torch.Tensor  # [N, T]
    win: torch.Tensor  # [P] row of the preferred completion
    lose: torch.Tensor  # [P] row of the other one
    pair_coef: torch.Tensor  # [P] group weight x within-group normalisation (sums to group weight per group)
    n_groups: int
    n_real_tokens: int
    prefix: SharedPrefix | None = None  # set with prefix sharing: input_ids/attention_mask are then the suffixes

    def to(self, device: torch.device) -> MicroBatch:
        """Copy the tensors to `device` (non-blocking when pinned)."""
        return MicroBatch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=self.attention_mask.to(device, non_blocking=True),
            win=self.win.to(device, non_blocking=True),
            lose=self.lose.to(device, non_blocking=True),
            pair_coef=self.pair_coef.to(device, non_blocking=True),
            n_groups=self.n_groups,
            n_real_tokens=self.n_real_tokens,
            prefix=self.prefix.to(device) if self.prefix is not None else None,
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of RewardModule.forward for this micro-batch."""
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.prefix is not None:
            inputs.update(prefix_ids=self.prefix.input_ids, prefix_mask=self.prefix.attention_mask,
                          row_group=self.prefix.row_group)
        return inputs


@dataclass
class SharedPrefix:
    """One left-padded prefix per group and, per row (completion), the index of its group's prefix."""

    input_ids: torch.Tensor  # [G, Tp]
    attention_mask: torch.Tensor  # [G, Tp]
    row_group: torch.Tensor  # [N]

    def to(self, device: torch.device) -> SharedPrefix:
        return SharedPrefix(self.input_ids.to(device, non_blocking=True),
                            self.attention_mask.to(device, non_blocking=True),
                            self.row_group.to(device, non_blocking=True))


def shared_prefix_length(rows: Sequence[list[int]]) -> int:
    """Length of the longest token prefix common to all rows, leaving at least one token in every row."""
    shortest = min(len(r) for r in rows)
    n = 0
    while n < shortest - 1 and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text; longer texts keep their end (the part the reward is read from)."""
    previous = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    finally:
        tokenizer.truncation_side = previous
    return [list(ids) for ids in encoded["input_ids"]]


def fit_group(rows: Sequence[list[int]], max_length: int) -> list[list[int]]:
    """Cut a group's sequences to `max_length` tokens, taking the same tokens off the start of the part they
    share (the prompt), so every completion is judged against the same context and the group keeps a
    common prefix to share. Only what is still too long after that loses its start on its own."""
    excess = max(len(r) for r in rows) - max_length
    if excess <= 0:
        return [list(r) for r in rows]
    cut = min(excess, shared_prefix_length(rows))
    return [list(r[cut:][-max_length:]) for r in rows]


def encode_groups(groups: Sequence[RankingGroup], tokenizer: Any, max_length: int) -> list[EncodedGroup]:
    """Render and tokenize every (prompt, completion) of every group in one tokenizer call, then fit each
    group to `max_length` (`fit_group`)."""
    texts = [render_prompt(g.prompt, c, tokenizer) for g in groups for c in g.completions]
    ids = [list(x) for x in tokenizer(texts, truncation=False, padding=False, verbose=False)["input_ids"]]
    out, pos = [], 0
    for g in groups:
        k = len(g.completions)
        out.append(EncodedGroup(input_ids=fit_group(ids[pos : pos + k], max_length), pairs=g.pairs(), weight=g.weight))
        pos += k
    return out


def pack_micro_batches(groups: Sequence[EncodedGroup], token_budget: int) -> list[list[int]]:
    """Split group indices into micro-batches whose padded size stays within `token_budget`.

    Groups are sorted longest first so similar lengths share a micro-batch (less padding); the order
    inside an optimizer step does not change the summed gradient.
    """
    order = sorted(range(len(groups)), key=lambda i: groups[i].max_len, reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    rows = longest = 0
    for i in order:
        g = groups[i]
        new_rows, new_longest = rows + len(g.input_ids), max(longest, g.max_len)
        if current and new_rows * new_longest > token_budget:
            batches.append(current)
            current, new_rows, new_longest = [], len(g.input_ids), g.max_len
        current.append(i)
        rows, longest = new_rows, new_longest
    if current:
        batches.append(current)
    return batches


def pad_rows(rows: Sequence[list[int]], pad_id: int, padding_side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists to a [N, T] tensor and its attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if padding_side == "right":
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        else:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


def collate(
    groups: Sequence[EncodedGroup], pad_id: int, rank_gap_weighting: bool = False, padding_side: str = "right",
    share_prefix: bool = False,
) -> MicroBatch:
    """Build a micro-batch: all completions of `groups` as rows, and the pair tensors over those rows.

    Within a group each pair's coefficient is 1/(number of non-tied pairs) (= 1/C(K,2) without ties),
    or gap/sum(gaps) with rank-gap weighting, times the group's weight. With `share_prefix` (and when every
    group has a common prefix of at least one token) rows hold the suffixes, right-padded, and `prefix`
    the groups' prefixes.
    """
    rows: list[list[int]] = []
    win: list[int] = []
    lose: list[int] = []
    coef: list[float] = []
    for g in groups:
        base = len(rows)
        rows.extend(g.input_ids)
        if not g.pairs:
            continue
        if rank_gap_weighting:
            total_gap = float(sum(gap for _, _, gap in g.pairs))
            norms = [gap / total_gap for _, _, gap in g.pairs]
        else:
            norms = [1.0 / len(g.pairs)] * len(g.pairs)
        for (w, lo, _), n in zip(g.pairs, norms, strict=True):
            win.append(base + w)
            lose.append(base + lo)
            coef.append(g.weight * n)
    prefix: SharedPrefix | None = None
    n_real_tokens = sum(len(r) for r in rows)
    cuts = [g.shared_prefix for g in groups] if share_prefix else []
    if cuts and min(cuts) >= 1:
        prefix_ids, prefix_mask = pad_rows([g.input_ids[0][:n] for g, n in zip(groups, cuts, strict=True)],
                                           pad_id, "left")
        row_group = [i for i, g in enumerate(groups) for _ in g.input_ids]
        rows = [r[cuts[i]:] for r, i in zip(rows, row_group, strict=True)]
        prefix = SharedPrefix(prefix_ids, prefix_mask, torch.tensor(row_group, dtype=torch.long))
        padding_side = "right"
    ids, mask = pad_rows(rows, pad_id, padding_side)
    return MicroBatch(
        input_ids=ids,
        attention_mask=mask,
        win=torch.tensor(win, dtype=torch.long),
        lose=torch.tensor(lose, dtype=torch.long),
        pair_coef=torch.tensor(coef, dtype=torch.float32),
        n_groups=len(groups),
        n_real_tokens=n_real_tokens,
        prefix=prefix,
    )
