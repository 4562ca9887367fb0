"""The one sampling path shared by evaluation, the CLI and every RL algorithm: batched, KV-cached rollouts.

Each distinct prompt is tokenised once and prefilled once; its KV cache is then repeated k times so the k
samples of a group share the prompt computation. Prompts are left-padded, responses right-padded, and
sampling stops on EOS. `rollout` returns the token ids and masks that training needs; `sample_completions`
returns decoded text. An optional vLLM backend is not implemented (not required: this loop is used everywhere).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tokenizers import decoders
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicCache

from worker.training.devices import to_device
from worker.training.kv_cache import model_cache_kwarg
from worker.training.streams import draw, stream_ids, uniforms

Prompt = str | list[dict[str, str]]


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Fold system messages into the first user turn, for templates that reject the system role."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        if rest and rest[0]["role"] == "user":
            rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, use_chat_template: bool = True) -> str:
    """Render a prompt (text or chat messages) to the exact string the model continues.

    With a chat template the generation prompt is appended; a template that rejects the system role is
    retried with the system text folded into the first user turn; without a template, messages become
    plain "role: content" lines (and a plain string is used as is).
    """
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        messages = _messages(prompt)
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - jinja raises TemplateError/any exception for unsupported roles
            text = tokenizer.apply_chat_template(
                _merge_system(messages), tokenize=False, add_generation_prompt=True
            )
        return str(text)
    if isinstance(prompt, str):
        return prompt
    lines = [f"{m['role']}: {m['content']}" for m in prompt]
    return "\n".join(lines) + "\nassistant: "


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    max_prompt_tokens: int | None = None,
    use_chat_template: bool = True,
) -> list[list[int]]:
    """Tokenise prompts (one batched tokenizer call); long prompts keep their last `max_prompt_tokens` tokens."""
    templated = use_chat_template and bool(getattr(tokenizer, "chat_template", None))
    texts = [format_prompt(tokenizer, p, use_chat_template) for p in prompts]
    # A chat template already writes its own BOS; plain text gets the tokenizer's usual special tokens.
    ids: list[list[int]] = tokenizer(texts, add_special_tokens=not templated)["input_ids"]
    if max_prompt_tokens is not None:
        ids = [x[-max_prompt_tokens:] for x in ids]
    if any(len(x) == 0 for x in ids):
        raise ValueError("a prompt encodes to zero tokens")
    return ids


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into (ids, attention_mask) tensors."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions that ignore left padding: 0 at each sequence's first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every token that ends a response: the tokenizer's EOS plus the generation config's (e.g. <|im_end|>)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, list | tuple):
        ids.update(int(x) for x in extra)
    if not ids:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token")
    return sorted(ids)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The pad id, falling back to EOS for tokenizers that define none."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token")
    return int(pid)


@dataclass
class Rollout:
    """A batch of sampled responses laid out for training.

    Rows are grouped by prompt: rows [i*k, (i+1)*k) are the k samples of prompt i. Prompt tensors are
    left-padded, response tensors right-padded; `response_mask` covers the response up to and including EOS.
    `logprobs` are the sampling-time log-probs of the chosen tokens (temperature applied, before top-p).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    has_eos: torch.Tensor
    prompt_index: torch.Tensor
    k: int

    @property
    def input_ids(self) -> torch.Tensor:
        """Prompt and response concatenated: (rows, prompt_len + response_len)."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """Attention mask of `input_ids` (left padding, prompt, response, right padding)."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    @property
    def response_lengths(self) -> torch.Tensor:
        """Number of response tokens per row (EOS included)."""
        return self.response_mask.sum(1)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask out the tail of the distribution outside the smallest set with cumulative probability >= top_p."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@torch.no_grad()
def _rollout_chunk(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    k: int,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    eos_ids: torch.Tensor,
    pad_id: int,
    streams: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    device = prompt_ids.device
    cache = DynamicCache(config=model.config)
    # The cache object is updated in place by every forward, so it is kept rather than read back from `out`.
    with_cache: dict[str, Any] = {model_cache_kwarg(model): cache, "use_cache": True}
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        logits_to_keep=1,
        **with_cache,
    )
    # The expensive part (prefill) ran once per distinct prompt; now fan out to k samples each.
    if k > 1:
        cache.batch_repeat_interleave(k)
    logits = out.logits[:, -1, :].float().repeat_interleave(k, dim=0)
    mask = prompt_mask.repeat_interleave(k, dim=0)
    next_pos = mask.sum(-1, keepdim=True)
    rows = logits.shape[0]
    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    steps = 0
    for t in range(max_new_tokens):
        scaled = logits / max(temperature, 1e-6)
        logp_all = torch.log_softmax(scaled, dim=-1)
        if temperature <= 0:
            tok = scaled.argmax(-1)
        else:
            tok = draw(_top_p_filter(scaled, top_p).softmax(-1), uniforms(streams, t))
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tokens[:, t] = tok
        logps[:, t] = torch.where(done, 0.0, logp_all.gather(-1, tok.unsqueeze(-1)).squeeze(-1))
        done = done | torch.isin(tok, eos_ids)
        steps = t + 1
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(
            input_ids=tok.unsqueeze(-1),
            attention_mask=mask,
            position_ids=next_pos,
            **with_cache,
        )
        next_pos = next_pos + 1
        logits = out.logits[:, -1, :].float()
    return tokens[:, :steps], logps[:, :steps], done


def rollout(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    k: int = 1,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    max_prompt_tokens: int | None = None,
    use_chat_template: bool = True,
    prompt_token_ids: Sequence[Sequence[int]] | None = None,
    prompt_keys: Sequence[int] | None = None,
) -> Rollout:
    """Sample k responses per prompt and return them laid out for training (see `Rollout`).

    `batch_size` counts distinct prompts per forward (so batch_size * k rows decode together). Pass
    `prompt_token_ids` to skip tokenisation (training encodes its prompts once for the whole run).
    A temperature of 0 decodes greedily. Each sample's randomness is its own stream, keyed by the seed,
    its prompt's key (`prompt_keys`, default: the prompt's position in `prompts`) and its sample number
    (worker.training.streams): the same seed and keys give the same samples whatever the batch size, the
    other prompts in the call, or the DDP rank that samples them (up to floating-point differences in the
    logits of differently shaped batches).
    """
    if k < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("k, max_new_tokens and batch_size must be >= 1")
    if not 0.0 < top_p <= 1.0:
        raise ValueError("top_p must be in (0, 1]")
    device = next(model.parameters()).device
    ids = (
        [list(x) for x in prompt_token_ids]
        if prompt_token_ids is not None
        else encode_prompts(tokenizer, prompts, max_prompt_tokens, use_chat_template)
    )
    pad_id = pad_token_id(tokenizer)
    eos = torch.tensor(eos_token_ids(model, tokenizer), device=device)
    keys = list(prompt_keys) if prompt_keys is not None else list(range(len(ids)))
    if len(keys) != len(ids):
        raise ValueError(f"{len(keys)} prompt keys for {len(ids)} prompts")
    streams = stream_ids(seed, keys, k, device)
    was_training = model.training
    model.eval()
    chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    try:
        for start in range(0, len(ids), batch_size):
            p_ids, p_mask = left_pad(ids[start : start + batch_size], pad_id)
            p_ids, p_mask = p_ids.to(device), p_mask.to(device)
            toks, logps, done = _rollout_chunk(
                model,
                p_ids,
                p_mask,
                k,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                eos_ids=eos,
                pad_id=pad_id,
                streams=streams[start * k : (start + batch_size) * k],
            )
            chunks.append((p_ids.repeat_interleave(k, 0), p_mask.repeat_interleave(k, 0), toks, logps, done))
    finally:
        model.train(was_training)
    p_width = max(c[0].shape[1] for c in chunks)
    r_width = max(c[2].shape[1] for c in chunks)
    prompt_ids, prompt_mask, response_ids, logprobs, has_eos = [], [], [], [], []
    for p, pm, r, lp, d in chunks:
        lpad = p_width - p.shape[1]
        rpad = r_width - r.shape[1]
        prompt_ids.append(torch.nn.functional.pad(p, (lpad, 0), value=pad_id))
        prompt_mask.append(torch.nn.functional.pad(pm, (lpad, 0), value=0))
        response_ids.append(torch.nn.functional.pad(r, (0, rpad), value=pad_id))
        logprobs.append(torch.nn.functional.pad(lp, (0, rpad), value=0.0))
        has_eos.append(d)
    resp = torch.cat(response_ids)
    eos_hit = torch.isin(resp, eos).long()
    # Real tokens: everything up to and including the first EOS (pad ids may equal EOS, so use the position).
    before_eos = (eos_hit.cumsum(1) - eos_hit) == 0
    lengths_cap = torch.cat([torch.full((c[2].shape[0],), c[2].shape[1], device=device) for c in chunks])
    in_range = torch.arange(r_width, device=device).unsqueeze(0) < lengths_cap.unsqueeze(1)
    response_mask = (before_eos & in_range).long()
    n_prompts = len(ids)
    return Rollout(
        prompt_ids=torch.cat(prompt_ids),
        prompt_mask=torch.cat(prompt_mask),
        response_ids=resp,
        response_mask=response_mask,
        logprobs=torch.cat(logprobs) * response_mask,
        has_eos=torch.cat(has_eos),
        prompt_index=torch.arange(n_prompts, device=device).repeat_interleave(k),
        k=k,
    )


@lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet (GPT-2's `bytes_to_unicode`): token character -> byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {chr(c): b for b, c in chars.items()}


def _byte_reader(tokenizer: PreTrainedTokenizerBase) -> Callable[[Sequence[int]], bytes | None] | None:
    """For a byte-level BPE tokenizer, a function from token ids to the UTF-8 bytes they spell (special tokens
    left out; None when a token is not in the byte alphabet). None for other tokenizers. The tokenizer's
    special and added tokens are read once here, not once per response."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not isinstance(backend.decoder, decoders.ByteLevel):
        return None
    alphabet = _byte_level_alphabet()
    added = tokenizer.added_tokens_decoder
    skip = set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}

    def read(ids: Sequence[int]) -> bytes | None:
        out = bytearray()
        kept = [i for i in ids if i not in skip]
        for token_id, token in zip(kept, tokenizer.convert_ids_to_tokens(kept), strict=True):
            if token_id in added:  # added tokens hold their text verbatim, not in the byte alphabet
                out += added[token_id].content.encode()
            elif not isinstance(token, str) or any(ch not in alphabet for ch in token):
                return None
            else:
                out += bytes(alphabet[ch] for ch in token)
        return bytes(out)

    return read


def _decode(tokenizer: PreTrainedTokenizerBase, read: Callable[[Sequence[int]], bytes | None] | None,
            ids: list[int]) -> str:
    raw = read(ids) if read is not None else None
    if raw is None:
        return str(tokenizer.decode(ids, skip_special_tokens=True)).rstrip("\ufffd")
    # final=False holds back an incomplete trailing character; errors="ignore" drops invalid bytes elsewhere.
    text = codecs.getincrementaldecoder("utf-8")(errors="ignore").decode(raw, final=False)
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        text = tokenizer.clean_up_tokenization(text)
    return text


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    """Decode one response's token ids as a whole, without special tokens, so that multi-byte characters
    spread over several tokens come out whole.

    A response cut at `max_new_tokens` can end inside a character: that incomplete character is dropped,
    never shown as U+FFFD. With a byte-level tokenizer, byte sequences that are not UTF-8 anywhere in the
    response are dropped too, so a U+FFFD in the text is one the model spelled out whole. Other tokenizers
    fall back to their own decode, with a trailing run of U+FFFD (a cut character) removed.
    """
    return _decode(tokenizer, _byte_reader(tokenizer), list(ids))


def decode_responses(tokenizer: PreTrainedTokenizerBase, batch: Rollout) -> list[str]:
    """Decode each row's response, without EOS/padding or other special tokens (see `decode_text`)."""
    read = _byte_reader(tokenizer)
    out = []
    for ids, mask in zip(batch.response_ids.tolist(), batch.response_mask.tolist(), strict=True):
        out.append(_decode(tokenizer, read, [t for t, m in zip(ids, mask, strict=True) if m]))
    return out


def sample_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    k: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    prompt_keys: Sequence[int] | None = None,
) -> list[list[str]]:
    """Sample k completions for each prompt; returns one list of k strings per prompt. With `prompt_keys`
    (e.g. database ids) a prompt gets the same samples for a seed whichever prompts it is sampled with."""
    if not prompts:
        return []
    batch = rollout(
        model,
        tokenizer,
        prompts,
        k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        prompt_keys=prompt_keys,
    )
    texts = decode_responses(tokenizer, batch)
    return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_policy(
    path_or_hub_id: str | Path,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a hub id.

    dtype 'auto' means bfloat16 on CUDA and float32 on CPU. A tokenizer without a pad token gets EOS as pad.
    """
    dev = resolve_device(device)
    if dtype is None or dtype == "auto":
        torch_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        torch_dtype = getattr(torch, dtype)
    else:
        torch_dtype = dtype
    tokenizer: Any = AutoTokenizer.from_pretrained(str(path_or_hub_id))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = AutoModelForCausalLM.from_pretrained(str(path_or_hub_id), dtype=torch_dtype)
    model: PreTrainedModel = to_device(loaded, dev)
    model.eval()
    return model, tokenizer
