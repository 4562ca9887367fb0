"""The project form, derived from the pydantic models: one typed field per setting, read back into `ProjectCreate`.

Every field of `ProjectCreate` and of each `ProjectSettings` section becomes a form field: its widget from the
annotation (checkbox, number, choice, list, text), its range from the `Field` constraints, its help from the
`Field` description (or `HELP` below for the settings that have none) and its default from the model. A setting
added to the model therefore appears in the form without touching this module or the template.

`read_form` turns submitted fields into the model and maps every validation error to the field it is about, as
a sentence ("K max (4) must be at least K min (9)") rather than the validation library's wording.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from app.projects.schemas import ProjectCreate, ProjectSettings

Widget = Literal["text", "textarea", "number", "checkbox", "select", "list"]
FormInput = Mapping[str, Sequence[str]]
"""Submitted fields: every value of each name (a list field sends one value per item)."""

SECTION_GROUPS = {"labeling": "labeling", "quality": "quality", "schedule": "loop", "sampling": "sampling",
                  "training": "training"}
"""Which form group each settings section belongs to; a section missing here gets a group of its own name."""
TOP_GROUPS = {"name": "project", "guidelines": "project"}
"""Project fields outside the settings; those not named here (K range, redundancy, lease) go to labeling."""
GROUPS = {
    "project": ("Project", "Its name and the guidelines annotators read."),
    "labeling": ("Labeling", "What annotators are shown and what they must fill in."),
    "quality": ("Quality", "Gold checks and reward-model help for annotators."),
    "loop": ("Loop", "When the loop retrains and which prompts a round samples."),
    "sampling": ("Sampling", "How candidate answers are generated for new tasks."),
    "training": ("Training", "How the worker trains the reward model and the policy."),
}

HELP = {
    "name": "shown in the project list; must be unique",
    "guidelines": "markdown; annotators see it beside every task",
    "k_min": "fewest answers in one task",
    "k_max": "most answers in one task (2 for pairwise)",
    "annotations_per_prompt": "independent rankings collected per prompt",
    "lease_minutes": "how long a task stays reserved for the annotator who opened it",
    "allow_fewer_than_k_min": "also show prompts that have fewer than K min answers (at least 2)",
    "labeling.flags": "problems annotators can tick on an answer; empty rows are left out",
    "labeling.likert_enabled": "annotators may rate each answer's quality on a 1–7 scale",
    "labeling.likert_required": "the 1–7 quality rating must be given for every answer",
    "labeling.rationale_required": "annotators must explain their ranking in a sentence",
    "labeling.flags_required": "annotators must tick at least one flag per answer",
    "labeling.demonstrations": "annotators may write their own better answer (used to train SFT)",
    "labeling.layout": "answers one under another or side by side",
    "labeling.mode": "rank all shown answers, or compare two on a 7-point preference scale",
    "quality.gold_threshold": "agreement with gold below which an annotator is flagged",
    "quality.pause_below_threshold": "stop giving tasks to annotators below the gold threshold",
    "quality.active_selection": "show prompts the reward model is least sure about first",
    "quality.show_rm_suggestion": "show annotators the reward model's suggested order",
    "schedule.enabled": "retrain automatically (otherwise rounds start by hand)",
    "schedule.prompts_per_round": "prompts a round samples new answers for",
    "sampling.temperature": "higher gives more varied answers",
    "sampling.top_p": "nucleus sampling: keep the most likely tokens up to this probability",
    "sampling.max_new_tokens": "longest answer generated, in tokens",
    "sampling.seed": "random seed of generation",
    "sampling.backend": "where answers are generated: in the worker's process or by an OpenAI-compatible server",
    "training.policy_model": "the policy to start from: a local path or a hub model id",
    "training.reward_model": "the reward model to start from: a local path or a hub model id",
    "training.algorithm": "how the policy learns from the rankings",
    "training.rm_epochs": "reward-model passes over the rankings; empty: chosen by the trainer",
    "training.rm_lr": "reward-model learning rate; empty: chosen by the trainer",
    "training.rm_batch_prompts": "prompts per reward-model step; empty: chosen by the trainer",
    "training.rm_heldout_fraction": "share of ranked prompts held out in the project's fixed test set (never trained on)",
    "training.rm_accuracy_tolerance": "held-out accuracy a new reward model may lose and still be promoted",
    "training.policy_lr": "policy learning rate",
    "training.policy_steps": "policy optimisation steps per round",
    "training.kl_beta": "KL penalty weight of PPO/RLOO",
    "training.dpo_beta": "DPO temperature",
    "training.kl_budget": "largest KL from the reference a policy may reach and still be promoted",
    "training.sft_lr": "SFT learning rate",
}
_WORDS = {"k": "K", "rm": "RM", "lr": "learning rate", "kl": "KL", "dpo": "DPO", "sft": "SFT", "rloo": "RLOO",
          "ai": "AI", "url": "URL", "api": "API", "lora": "LoRA", "s": "(s)"}
_LABELS = {"annotations_per_prompt": "Rankings per prompt", "lease_minutes": "Lease (minutes)",
           "labeling.likert_enabled": "Quality rating (1–7)", "labeling.likert_required": "Quality rating required",
           "schedule.enabled": "Automatic rounds"}
"""Labels by form key, where the field name alone would not say enough."""


@dataclass(frozen=True)
class FieldSpec:
    """One form field, derived from one model field."""

    key: str
    """The form name: "k_min" for a project field, "section.name" for a setting."""
    section: str | None
    name: str
    group: str
    label: str
    help: str
    widget: Widget
    default: Any
    required: bool = False
    """No default: the admin must fill it in (the project's name)."""
    optional: bool = False
    integer: bool = False
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    max_length: int | None = None

    @property
    def dom_id(self) -> str:
        return "f-" + self.key.replace(".", "-").replace("_", "-")

    @property
    def default_text(self) -> str:
        """The default as shown beside the field."""
        return display(self.default, empty="empty" if self.widget == "text" else "automatic")

    @property
    def range_text(self) -> str:
        """The allowed range in words ("2 to 16", "more than 0, at most 1"), or "" for a non-number."""
        if self.widget != "number":
            return ""
        if self.ge is not None and self.le is not None:
            return f"{_number(self.ge)} to {_number(self.le)}"
        parts = [f"{word} {_number(bound)}" for word, bound in
                 (("at least", self.ge), ("more than", self.gt), ("at most", self.le), ("less than", self.lt))
                 if bound is not None]
        return ", ".join(parts)


@dataclass(frozen=True)
class Group:
    """A titled group of fields, in form order."""

    name: str
    title: str
    blurb: str
    fields: tuple[FieldSpec, ...]


@dataclass
class FormState:
    """What the form shows: the values (as typed, or from a project), the messages per field, and the data
    read from them when nothing was wrong. The error under key "" is about the form as a whole."""

    values: dict[str, Any]
    errors: dict[str, str]
    data: ProjectCreate | None = None


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(value)


def display(value: Any, *, empty: str = "empty") -> str:
    """A default or value in words: "on"/"off", a number without trailing ".0", "automatic" for None."""
    if value is None:
        return "automatic"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return str(value) if value != "" else empty


def _label(name: str) -> str:
    words = [_WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[0].upper() + text[1:]


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _spec(key: str, section: str | None, name: str, group: str, info: FieldInfo) -> FieldSpec:
    annotation, optional = _unwrap(info.annotation)
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["ge"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            bounds["gt"] = item.gt
        elif isinstance(item, annotated_types.Le):
            bounds["le"] = item.le
        elif isinstance(item, annotated_types.Lt):
            bounds["lt"] = item.lt
        elif isinstance(item, annotated_types.MaxLen):
            bounds["max_length"] = item.max_length
    widget: Widget
    choices: tuple[str, ...] = ()
    if annotation is bool:
        widget = "checkbox"
    elif get_origin(annotation) is Literal:
        widget, choices = "select", tuple(str(c) for c in get_args(annotation))
    elif get_origin(annotation) is list:
        widget = "list"
    elif annotation in (int, float):
        widget = "number"
    elif annotation is str and (bounds.get("max_length") or 0) > 10_000:
        widget = "textarea"
    else:
        widget = "text"
    return FieldSpec(
        key=key, section=section, name=name, group=group, label=_LABELS.get(key) or _label(name),
        help=info.description or HELP.get(key, ""), widget=widget,
        default=None if info.is_required() else info.get_default(call_default_factory=True),
        required=info.is_required(), optional=optional, integer=annotation is int,
        choices=choices, **bounds,
    )


def field_specs() -> tuple[FieldSpec, ...]:
    """Every field of the form, from `ProjectCreate` and the sections of `ProjectSettings`, in model order."""
    specs = [_spec(name, None, name, TOP_GROUPS.get(name, "labeling"), info)
             for name, info in ProjectCreate.model_fields.items() if name != "settings"]
    for section, section_info in ProjectSettings.model_fields.items():
        model = _unwrap(section_info.annotation)[0]
        assert isinstance(model, type) and issubclass(model, BaseModel)
        group = SECTION_GROUPS.get(section, section)
        specs.extend(_spec(f"{section}.{name}", section, name, group, info)
                     for name, info in model.model_fields.items())
    return tuple(specs)


def groups(specs: Sequence[FieldSpec] | None = None) -> tuple[Group, ...]:
    """The fields grouped (project, labeling, quality, loop, sampling, training, then any new section)."""
    specs = field_specs() if specs is None else specs
    order = list(GROUPS) + sorted({s.group for s in specs} - set(GROUPS))
    found = []
    for name in order:
        members = tuple(s for s in specs if s.group == name)
        if members:
            title, blurb = GROUPS.get(name, (_label(name), ""))
            found.append(Group(name, title, blurb, members))
    return tuple(found)


def _form_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, int | float):
        return _number(value)
    return str(value)


def values_of(data: ProjectCreate, specs: Sequence[FieldSpec] | None = None) -> dict[str, Any]:
    """The form values showing `data`: text for inputs, booleans for checkboxes, lists of text for lists."""
    specs = field_specs() if specs is None else specs
    values = {}
    for spec in specs:
        holder: Any = data if spec.section is None else getattr(data.settings, spec.section)
        values[spec.key] = _form_value(getattr(holder, spec.name))
    return values


def settings_json(data: ProjectCreate) -> str:
    """The settings of `data` as the JSON stored with the project (the read-only advanced view)."""
    return json.dumps(data.settings.model_dump(mode="json"), indent=2, ensure_ascii=False)


def _convert(spec: FieldSpec, raw: list[str]) -> tuple[Any, str | None]:
    """(the typed value of one submitted field, or a message); a value of `...` leaves the field out."""
    if not raw:  # not sent at all (a script posting some fields): the caller's base value or the default
        return ..., None
    if spec.widget == "checkbox":
        return raw[-1] in ("true", "on", "1", "yes"), None
    if spec.widget == "list":
        return [item.strip() for item in raw if item.strip()], None
    text = raw[-1]
    if spec.widget != "number":
        return (text.strip() if spec.widget == "text" else text), None
    text = text.strip()
    if not text:
        if spec.optional:
            return None, None
        return ..., f"{spec.label} needs a value"
    try:
        number: float = int(text) if spec.integer else float(text)
    except ValueError:
        return ..., f"{spec.label} must be a {'whole number' if spec.integer else 'number'}, not {text[:40]!r}"
    if not math.isfinite(number):
        return ..., f"{spec.label} must be a finite number"
    return number, None


def _as_submitted(value: Any) -> list[str]:
    """A form value as the page would submit it."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return (list(value) or [""]) if isinstance(value, list) else [value]


def read_form(form: FormInput, specs: Sequence[FieldSpec] | None = None, *,
              base: ProjectCreate | None = None) -> FormState:
    """Read submitted fields into `ProjectCreate`; every problem becomes a message at its field.

    The page sends every field (a checkbox as a hidden "false" before it, a list with a blank row); a field not
    sent at all keeps its value in `base` (the project being edited, the kind's defaults) or the model default.
    """
    specs = field_specs() if specs is None else specs
    base_values = values_of(base, specs) if base is not None else {}
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    data: dict[str, Any] = {"settings": {}}
    for spec in specs:
        raw = [v for v in form.get(spec.key, ()) if isinstance(v, str)]
        if not raw and base is not None:
            raw = _as_submitted(base_values[spec.key])
        value, message = _convert(spec, raw)
        if not raw:
            values[spec.key] = "" if spec.required else _form_value(spec.default)
        else:
            values[spec.key] = value if spec.widget in ("checkbox", "list") else raw[-1]
        if message:
            errors[spec.key] = message
        elif value is not ...:
            target = data if spec.section is None else data["settings"].setdefault(spec.section, {})
            target[spec.name] = value
    try:
        model = ProjectCreate.model_validate(data)
    except ValidationError as exc:
        for key, message in field_errors(exc, specs).items():
            errors.setdefault(key, message)
        return FormState(values, errors)
    if errors:
        return FormState(values, errors)
    return FormState(values, errors, model)


def _mentions(message: str, candidates: Sequence[FieldSpec]) -> list[tuple[int, FieldSpec]]:
    """The fields `message` names, in the order it names them; names like "k_max" count before plain words
    ("mode", "seed"), which a sentence may use in their ordinary sense."""
    for identifiers in (True, False):
        found = []
        for spec in candidates:
            if ("_" in spec.name) != identifiers:
                continue
            match = re.search(rf"\b{re.escape(spec.name)}\b", message)
            if match:
                found.append((match.start(), spec))
        if found:
            return sorted(found, key=lambda pair: pair[0])
    return []


def humanize(message: str, specs: Sequence[FieldSpec]) -> str:
    """`message` with the field identifiers it mentions written as their labels ("k_max" → "K max")."""
    for spec in sorted(specs, key=lambda s: -len(s.name)):
        if "_" in spec.name:
            message = re.sub(rf"\b{re.escape(spec.name)}\b", spec.label, message)
    return message


def _sentence(error: Mapping[str, Any], spec: FieldSpec, specs: Sequence[FieldSpec]) -> str:
    kind, ctx, label = error["type"], error.get("ctx") or {}, spec.label
    bounds = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
              "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}
    if kind in bounds:
        word, key = bounds[kind]
        return f"{label} must be {word} {_number(ctx[key])}"
    if kind == "too_long":
        return f"{label}: at most {ctx['max_length']} items"
    if kind == "string_too_long":
        return f"{label}: at most {ctx['max_length']} characters"
    if kind == "string_too_short":
        return f"{label} must not be empty" if ctx.get("min_length") == 1 else \
            f"{label}: at least {ctx['min_length']} characters"
    if kind == "string_pattern_mismatch":
        return f"{label}: {str(error.get('input'))[:40]!r} is not in the accepted form ({ctx.get('pattern')})"
    if kind == "literal_error":
        return f"{label} must be one of: {', '.join(spec.choices)}"
    if kind == "missing":
        return f"{label} needs a value"
    if kind == "finite_number":
        return f"{label} must be a finite number"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{label} must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"{label} must be a number"
    if kind == "value_error":
        text = humanize(str(error["msg"]).removeprefix("Value error, "), specs)
        return text[:1].upper() + text[1:] if label in text else f"{label} {text}"
    return f"{label}: {error['msg']}"


def field_errors(exc: ValidationError, specs: Sequence[FieldSpec] | None = None) -> dict[str, str]:
    """Each error of `ProjectCreate` validation as a sentence keyed by the form field it is about.

    A field's own error has its location; a cross-field one (a model validator, location `()` or a section)
    goes to the first field its message names, with every field name in it written as its label."""
    specs = field_specs() if specs is None else specs
    by_loc: dict[tuple[str, ...], FieldSpec] = {
        (s.name,) if s.section is None else ("settings", s.section, s.name): s for s in specs
    }
    found: dict[str, str] = {}
    for error in exc.errors():
        loc = tuple(str(p) for p in error["loc"])
        spec = by_loc.get(loc[:1]) or by_loc.get(loc[:3])
        if spec is None:
            scope = [s for s in specs if len(loc) >= 2 and s.section == loc[1]] or list(specs)
            mentioned = _mentions(str(error["msg"]), scope)
            if not mentioned:
                message = humanize(str(error["msg"]).removeprefix("Value error, "), specs)
                found.setdefault("", message)
                continue
            spec = mentioned[0][1]
        found.setdefault(spec.key, _sentence(error, spec, specs))
    return found


def error_key_for(message: str, specs: Sequence[FieldSpec] | None = None) -> str:
    """The field a service's error message is about ("a project named 'x' already exists" → name), or ""."""
    specs = field_specs() if specs is None else specs
    if message.startswith("a project named"):
        return "name"
    mentioned = _mentions(message, specs)
    return mentioned[0][1].key if mentioned else ""
