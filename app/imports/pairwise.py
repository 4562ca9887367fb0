"""Preference pairs (`prompt`/`chosen`/`rejected`) in the three shapes people publish them in.

1. plain strings: `{"prompt": str, "chosen": str, "rejected": str}`;
2. conversational (TRL): message lists, with the prompt given or left implicit as the shared prefix;
3. Anthropic-HH transcripts: `chosen`/`rejected` are whole dialogues ("\\n\\nHuman: … \\n\\nAssistant: …");
   the shared prefix up to the last common "Assistant:" turn is the prompt, the rest are the answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


class PairError(ValueError):
    """A pair that cannot be read; `field` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


@dataclass(frozen=True, slots=True)
class Pair:
    """A prompt (text or messages) with the chosen and rejected answers as plain text."""

    text: str | None
    messages: list[dict[str, Any]] | None
    chosen: str
    rejected: str


def read_pair(record: dict[str, Any]) -> Pair:
    """The pair of one record, or PairError naming the field that is wrong."""
    prompt = record.get("prompt")
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if prompt is None:
        if isinstance(chosen, list) and isinstance(rejected, list):
            return _implicit_messages(chosen, rejected)
        if isinstance(chosen, str) and isinstance(rejected, str):
            return _hh_transcripts(chosen, rejected)
        raise PairError("chosen", "chosen and rejected must both be strings or both be message lists")
    return Pair(
        text=prompt if isinstance(prompt, str) else None,
        messages=prompt if isinstance(prompt, list) else None,
        chosen=_answer_text(chosen, "chosen"),
        rejected=_answer_text(rejected, "rejected"),
    )


def _answer_text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return _assistant_text(value, field)
    raise PairError(field, "expected a string or a non-empty list of assistant messages")


def _assistant_text(messages: list[Any], field: str) -> str:
    parts = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            raise PairError(field, "the answer must consist of assistant messages only")
        content = message.get("content")
        if not isinstance(content, str):
            raise PairError(field, "message content must be a string")
        parts.append(content)
    return "\n\n".join(parts)


def _implicit_messages(chosen: list[Any], rejected: list[Any]) -> Pair:
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    # The prompt ends before the first assistant turn in which the two dialogues differ.
    if shared == 0:
        raise PairError("chosen", "chosen and rejected share no prompt messages; give a `prompt` field")
    return Pair(
        text=None,
        messages=list(chosen[:shared]),
        chosen=_assistant_text(chosen[shared:], "chosen") if chosen[shared:] else _empty("chosen"),
        rejected=_assistant_text(rejected[shared:], "rejected") if rejected[shared:] else _empty("rejected"),
    )


def _empty(field: str) -> str:
    raise PairError(field, "no answer after the shared prompt messages")


def _hh_transcripts(chosen: str, rejected: str) -> Pair:
    if HUMAN not in chosen or ASSISTANT not in chosen:
        raise PairError("prompt", "missing prompt: give a `prompt` field, or HH-style transcripts with Human/Assistant turns")
    limit = 0
    while limit < min(len(chosen), len(rejected)) and chosen[limit] == rejected[limit]:
        limit += 1
    cut = chosen.rfind(ASSISTANT, 0, limit)
    # The marker must lie wholly inside the common prefix, or the answers would start mid-marker.
    while cut != -1 and cut + len(ASSISTANT) > limit:
        cut = chosen.rfind(ASSISTANT, 0, cut)
    if cut == -1:
        raise PairError("chosen", "chosen and rejected share no Assistant turn; cannot find the prompt")
    end = cut + len(ASSISTANT)
    answers = chosen[end:].strip(), rejected[end:].strip()
    if not answers[0]:
        raise PairError("chosen", "no answer after the last shared Assistant turn")
    if not answers[1]:
        raise PairError("rejected", "no answer after the last shared Assistant turn")
    return Pair(text=None, messages=transcript_messages(chosen[:cut]), chosen=answers[0], rejected=answers[1])


def transcript_messages(transcript: str) -> list[dict[str, Any]]:
    """Human/Assistant turns of an HH transcript as chat messages (text before the first turn is dropped)."""
    parts = _TURN.split(transcript)
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": _ROLES[speaker], "content": content.strip()})
    if not messages:
        raise PairError("chosen", "the shared prompt has no Human turn")
    return messages
