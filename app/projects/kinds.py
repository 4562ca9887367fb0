"""Project kinds: the starting settings a new project gets for what it labels (general, assistant, chat, summaries).

A kind only chooses the defaults the new-project form starts from; it is not stored. A summarisation project
has no use for "inappropriate for a customer assistant", so only the assistant kind starts with that flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from app.projects.schemas import DEFAULT_FLAGS, ProjectCreate

KindName = Literal["general", "assistant", "chat", "summarisation"]


@dataclass(frozen=True)
class Kind:
    """A kind of project: its name in URLs, its label, a one-line description and the settings it starts from."""

    name: KindName
    label: str
    blurb: str
    flags: tuple[str, ...]
    labeling: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("general", "General", "instructions and answers of any kind", DEFAULT_FLAGS),
        Kind("assistant", "Customer assistant", "a support or sales assistant talking to customers",
             (*DEFAULT_FLAGS, "inappropriate for a customer assistant")),
        Kind("chat", "Chat", "multi-turn conversations", (*DEFAULT_FLAGS, "ignores earlier turns")),
        Kind("summarisation", "Summarisation", "summaries of a source text, compared side by side",
             ("misses a key point", "states something the source does not say", "too long or repetitive",
              "harmful or toxic"),
             {"layout": "side-by-side"}),
    )
}
DEFAULT_KIND: KindName = "general"


def defaults_for(kind: str) -> ProjectCreate:
    """The values the new-project form starts from for `kind` (name left empty for the admin to type)."""
    chosen = KINDS[kind]
    data = ProjectCreate.model_validate(
        {"name": "x", "settings": {"labeling": {"flags": list(chosen.flags), **chosen.labeling}}}
    )
    return data.model_copy(update={"name": ""})
