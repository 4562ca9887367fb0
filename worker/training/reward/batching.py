"""Tokenizing ranking groups once and packing them into token-budgeted micro-batches.

A micro-batch always holds whole groups (every completion of a prompt forwarded together, once), and
its padded size (sequences x longest sequence) stays under the token budget so long completions do not
run out of memory; a single group over budget goes alone.

Inputs over `max_length` keep what carries the preference: the completion's end and the prompt's latest
turns. A chat prompt (or an Anthropic-HH transcript) first loses whole oldest exchanges (a system message
stays), then the shared prompt loses tokens from its start (after leading special tokens such as [CLS]),
and only a completion still too long on its own loses its start. Every cut is recorded on the encoded group
and summed by `truncation_report`; nothing is dropped without being counted, and pairs whose two sides are
the same token sequence (identical texts, or identical once cut) are left out of training and counted.

With prefix sharing, the K token sequences of a group are split into the longest token prefix they all
share (the prompt, found on the token ids themselves, so tokenisation is unchanged) and K suffixes: the
model forwards the prefix once per group and each suffix on top of it (worker.training.reward.model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from worker.training.groups import Prompt, RankingGroup, render_prompt

_HH_HUMAN = "\n\nHuman:"


@dataclass
class EncodedGroup:
    """A ranking group as token ids: one list per completion, plus its non-tied pairs and weight."""

    input_ids: list[list[int]]
    pairs: list[tuple[int, int, int]]  # (winner, loser, rank gap) as completion indices
    weight: float
    cut: list[int] = field(default_factory=list)  # tokens removed per completion row ([] = none)
    completion_cut: list[bool] = field(default_factory=list)  # the row lost tokens beyond the shared prompt
    turns_dropped: int = 0  # whole oldest prompt turns removed to fit
    identical_pairs: int = 0  # pairs left out of `pairs` because both sides are the same tokens

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
    """Token ids per text; longer texts keep their end (the part the reward is read from) and their leading
    special tokens ([CLS], BOS)."""
    return [fit_group([r], max_length, keep_head=_special_head(tokenizer, [r]))[0]
            for r in _tokenize(tokenizer, list(texts))]


def fit_group(rows: Sequence[list[int]], max_length: int, keep_head: int = 0) -> list[list[int]]:
    """Cut a group's sequences to `max_length` tokens, taking the same tokens off the start of the part they
    share (the prompt), so every completion is judged against the same context and the group keeps a
    common prefix to share. Only what is still too long after that loses its start on its own.

    The first `keep_head` tokens (leading special tokens such as [CLS] or BOS) are never cut."""
    return _fit(rows, max_length, keep_head)[0]


def _fit(rows: Sequence[list[int]], max_length: int, keep_head: int) -> tuple[list[list[int]], list[int]]:
    """`fit_group`'s rows and, per row, the tokens it lost on its own (beyond the shared prompt)."""
    excess = max(len(r) for r in rows) - max_length
    if excess <= 0:
        return [list(r) for r in rows], [0] * len(rows)
    shared = shared_prefix_length(rows)
    head = min(keep_head, shared) if keep_head < max_length else 0
    cut = min(excess, shared - head)
    out, own = [], []
    for r in rows:
        kept = list(r[:head]) + list(r[head + cut :])
        over = max(len(kept) - max_length, 0)
        if over:
            kept = kept[:head] + kept[head + over :]
        out.append(kept)
        own.append(over)
    return out, own


def drop_oldest_turn(prompt: Prompt) -> Prompt | None:
    """The prompt without its oldest exchange (up to the next user turn), or None when one turn is left.

    Chat lists keep a leading system message; text prompts are split at Anthropic-HH `\n\nHuman:` turns."""
    if isinstance(prompt, str):
        first = prompt.find(_HH_HUMAN)
        nxt = prompt.find(_HH_HUMAN, first + 1) if first >= 0 else -1
        return prompt[nxt:] if nxt > 0 else None
    start = 1 if prompt and prompt[0].get("role") == "system" else 0
    users = [i for i in range(start + 1, len(prompt)) if prompt[i].get("role") == "user"]
    if not users:
        return None
    return [*prompt[:start], *prompt[users[0] :]]


def _tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [list(x) for x in tokenizer(texts, truncation=False, padding=False, verbose=False)["input_ids"]]


def _special_head(tokenizer: Any, rows: Sequence[list[int]]) -> int:
    """How many leading tokens, the same in every row, are special tokens ([CLS], BOS)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    n = 0
    while all(len(r) > n and r[n] == rows[0][n] and r[n] in special for r in rows):
        n += 1
    return n


def _encode_one(group: RankingGroup, rows: list[list[int]], tokenizer: Any, max_length: int) -> EncodedGroup:
    full = [len(r) for r in rows]
    prompt, turns = group.prompt, 0
    while max(len(r) for r in rows) > max_length:
        shorter = drop_oldest_turn(prompt)
        if shorter is None:
            break
        prompt, turns = shorter, turns + 1
        rows = _tokenize(tokenizer, [render_prompt(prompt, c, tokenizer) for c in group.completions])
    fitted, own = _fit(rows, max_length, _special_head(tokenizer, rows))
    cut = [n - len(r) for n, r in zip(full, fitted, strict=True)]
    completion_cut = [o > 0 for o in own]
    pairs = [p for p in group.pairs() if fitted[p[0]] != fitted[p[1]]]
    return EncodedGroup(input_ids=fitted, pairs=pairs, weight=group.weight, cut=cut if any(cut) else [],
                        completion_cut=completion_cut if any(completion_cut) else [], turns_dropped=turns,
                        identical_pairs=len(group.pairs()) - len(pairs))


def encode_groups(groups: Sequence[RankingGroup], tokenizer: Any, max_length: int) -> list[EncodedGroup]:
    """Render and tokenize every (prompt, completion) of every group in one tokenizer call, then fit each
    group to `max_length`: oldest whole turns first (`drop_oldest_turn`), then tokens (`fit_group`)."""
    ids = _tokenize(tokenizer, [render_prompt(g.prompt, c, tokenizer) for g in groups for c in g.completions])
    out, pos = [], 0
    for g in groups:
        k = len(g.completions)
        out.append(_encode_one(g, ids[pos : pos + k], tokenizer, max_length))
        pos += k
    return out


def truncation_report(encoded: Sequence[EncodedGroup]) -> dict[str, Any]:
    """How many groups, pairs and completions were cut to fit, by how much, and the identical pairs left out."""
    pairs = pairs_cut = pairs_completion_cut = rows_cut = groups_cut = tokens = most = 0
    for g in encoded:
        cut = g.cut or [0] * len(g.input_ids)
        comp = g.completion_cut or [False] * len(g.input_ids)
        pairs += len(g.pairs)
        pairs_cut += sum(1 for w, lo, _ in g.pairs if cut[w] or cut[lo])
        pairs_completion_cut += sum(1 for w, lo, _ in g.pairs if comp[w] or comp[lo])
        rows_cut += sum(1 for c in cut if c)
        groups_cut += 1 if any(cut) else 0
        tokens += sum(cut)
        most = max([most, *cut])
    return {
        "groups": len(encoded), "groups_cut": groups_cut, "sequences_cut": rows_cut,
        "pairs": pairs, "pairs_cut": pairs_cut, "pairs_with_completion_cut": pairs_completion_cut,
        "tokens_removed": tokens, "max_tokens_removed": most,
        "mean_tokens_removed_per_cut_sequence": tokens / rows_cut if rows_cut else 0.0,
        "turns_dropped": sum(g.turns_dropped for g in encoded),
        "identical_pairs_left_out": sum(g.identical_pairs for g in encoded),
    }


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
