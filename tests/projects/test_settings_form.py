"""The project form derived from the pydantic models (issue 14, item 1): every setting is a typed field with its
help, default and range; submitted text reads back into the model; every error is a sentence at its field."""

from __future__ import annotations

from typing import Any

import pytest

from app.projects import settings_form
from app.projects.kinds import KINDS, defaults_for
from app.projects.schemas import ProjectCreate, ProjectSettings
from app.projects.settings_form import FieldSpec, field_specs, read_form, values_of

SPECS = {s.key: s for s in field_specs()}


def _submitted(values: dict[str, Any]) -> dict[str, list[str]]:
    """What the page sends for these form values: lists as one value per item and a blank row, a checkbox as
    its hidden "false" followed by "true" when ticked."""
    form: dict[str, list[str]] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            form[key] = ["false", "true"] if value else ["false"]
        elif isinstance(value, list):
            form[key] = [*value, ""]  # the blank "add one" row
        else:
            form[key] = [value]
    return form


def _form(**changes: str | list[str] | bool) -> dict[str, list[str]]:
    values = values_of(defaults_for("general"))
    values["name"] = "p"
    values.update({k.replace("__", "."): v for k, v in changes.items()})
    return _submitted(values)


def test_every_setting_of_the_model_is_a_field_with_help_and_its_group() -> None:
    expected = {name for name in ProjectCreate.model_fields if name != "settings"} | {
        f"{section}.{name}" for section, info in ProjectSettings.model_fields.items()
        for name in info.annotation.model_fields  # type: ignore[union-attr]
    }
    assert set(SPECS) == expected
    missing_help = [key for key, spec in SPECS.items() if not spec.help]
    assert not missing_help, f"settings without a description (add description= or a HELP entry): {missing_help}"
    assert [g.name for g in settings_form.groups()][:6] == ["project", "labeling", "quality", "loop", "sampling",
                                                          "training"]
    assert SPECS["schedule.retrain_every"].group == "loop" and SPECS["k_min"].group == "labeling"


def test_widgets_ranges_and_defaults_come_from_the_field_constraints() -> None:
    k_min, rm_lr, flags = SPECS["k_min"], SPECS["training.rm_lr"], SPECS["labeling.flags"]
    assert (k_min.widget, k_min.integer, k_min.ge, k_min.le, k_min.default) == ("number", True, 2, 16, 4)
    assert k_min.range_text == "2 to 16" and k_min.label == "K min"
    assert (rm_lr.optional, rm_lr.range_text, rm_lr.default_text) == (True, "more than 0, at most 1", "automatic")
    assert (flags.widget, flags.max_length) == ("list", 30)
    assert SPECS["labeling.layout"].choices == ("stacked", "side-by-side")
    assert SPECS["schedule.enabled"].widget == "checkbox" and SPECS["schedule.enabled"].default_text == "off"
    assert SPECS["guidelines"].widget == "textarea"
    assert SPECS["schedule.retrain_every"].help == "new comparisons that trigger retraining"  # the description


def test_a_new_setting_appears_in_the_form_without_touching_it() -> None:
    from pydantic import BaseModel, Field

    class Extra(BaseModel):
        shards: int = Field(default=3, ge=1, le=8, description="how many pieces")

    spec = settings_form._spec("extra.shards", "extra", "shards", "extra", Extra.model_fields["shards"])
    assert (spec.widget, spec.help, spec.range_text, spec.default_text) == ("number", "how many pieces", "1 to 8", "3")


def _varied() -> ProjectCreate:
    """A project where every setting differs from its default, within its range."""
    data: dict[str, Any] = {"name": "varied", "guidelines": "Rank *carefully*.", "k_min": 3, "k_max": 5,
                            "annotations_per_prompt": 2, "lease_minutes": 45, "allow_fewer_than_k_min": True,
                            "settings": {}}
    for spec in field_specs():
        if spec.section is None:
            continue
        value: Any
        if spec.widget == "checkbox":
            value = not spec.default
        elif spec.widget == "select":
            value = next(c for c in spec.choices if c != spec.default)
        elif spec.widget == "list":
            value = ["too short", "off topic"]
        elif spec.widget == "number":
            low = spec.ge if spec.ge is not None else spec.gt
            value = 2 if spec.integer else 0.25
            if low is not None and value <= low:
                value = low + 1
            if spec.le is not None and value > spec.le:
                value = spec.le
        else:
            value = f"{spec.name}-value"
        data["settings"].setdefault(spec.section, {})[spec.name] = value
    data["settings"]["labeling"]["mode"] = "ranking"  # pairwise needs K max 2
    sampling = data["settings"]["sampling"]
    if "backend" in sampling:  # a server backend needs its URL
        sampling["base_url"] = "http://127.0.0.1:8000/v1"
        sampling.pop("api_key_env", None)
    return ProjectCreate.model_validate(data)


def test_every_setting_round_trips_through_the_form() -> None:
    varied = _varied()
    for start in (varied, defaults_for("summarisation")):
        start = start.model_copy(update={"name": start.name or "x"})
        state = read_form(_submitted(values_of(start)))
        assert state.errors == {} and state.data is not None
        assert state.data.model_dump() == start.model_dump()


def test_list_fields_drop_blank_rows_and_keep_order() -> None:
    state = read_form(_form(labeling__flags=["  off topic ", "", "too long", ""]))
    assert state.data is not None and state.data.settings.labeling.flags == ["off topic", "too long"]
    empty = read_form(_form(labeling__flags=[]))
    assert empty.data is not None and empty.data.settings.labeling.flags == []


def test_too_many_list_items_is_a_sentence_at_the_list() -> None:
    state = read_form(_form(labeling__flags=[f"flag {i}" for i in range(31)]))
    assert state.errors == {"labeling.flags": "Flags: at most 30 items"}
    assert len(state.values["labeling.flags"]) == 31  # kept to be fixed, not cut


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"k_min": "9", "k_max": "4"}, "k_max", "K max (4) must be at least K min (9)"),
        ({"k_max": "5", "labeling__mode": "pairwise"}, "k_max",
         "Pairwise mode compares two answers: K max must be 2, not 5"),
        ({"k_min": "1"}, "k_min", "K min must be at least 2"),
        ({"training__rm_lr": "0"}, "training.rm_lr", "RM learning rate must be more than 0"),
        ({"quality__gold_rate": "0.0001"}, "quality.gold_rate", "Gold rate must be 0 (no gold) or at least 0.001"),
        ({"sampling__temperature": "warm"}, "sampling.temperature", "Temperature must be a number, not 'warm'"),
        ({"sampling__max_new_tokens": "1.5"}, "sampling.max_new_tokens",
         "Max new tokens must be a whole number, not '1.5'"),
        ({"schedule__retrain_every": ""}, "schedule.retrain_every", "Retrain every needs a value"),
        ({"training__kl_beta": "nan"}, "training.kl_beta", "KL beta must be a finite number"),
        ({"labeling__layout": "grid"}, "labeling.layout", "Layout must be one of: stacked, side-by-side"),
        ({"name": "  "}, "name", "Name must not be empty"),
    ],
)
def test_errors_are_sentences_at_their_field_and_input_is_kept(changes: dict[str, str], key: str,
                                                               message: str) -> None:
    state = read_form(_form(**changes))
    assert state.data is None
    assert state.errors == {key: message}
    for name, typed in changes.items():
        assert state.values[name.replace("__", ".")] == typed


@pytest.mark.skipif("sampling.backend" not in SPECS, reason="no sampling backend setting")
def test_a_section_validator_error_goes_to_the_field_it_names() -> None:
    state = read_form(_form(sampling__backend="openai", sampling__base_url=""))
    assert list(state.errors) == ["sampling.base_url"]
    assert state.errors["sampling.base_url"].startswith("Backend 'openai' needs Base URL")


def test_several_errors_are_reported_together() -> None:
    state = read_form(_form(k_min="1", sampling__temperature="hot", training__policy_steps="0"))
    assert set(state.errors) == {"k_min", "sampling.temperature", "training.policy_steps"}


def test_optional_numbers_left_empty_mean_automatic() -> None:
    state = read_form(_form(training__rm_epochs="", sampling__k=""))
    assert state.data is not None and state.data.settings.training.rm_epochs is None and state.data.settings.sampling.k is None


def test_fields_not_sent_keep_the_base_values_or_the_defaults() -> None:
    base = _varied()
    state = read_form({"name": ["renamed"], "k_max": ["6"]}, base=base)
    assert state.errors == {} and state.data is not None
    assert state.data.model_dump() == {**base.model_dump(), "name": "renamed", "k_max": 6}
    bare = read_form({"name": ["bare"]})
    assert bare.data is not None and bare.data.model_dump() == ProjectCreate(name="bare").model_dump()
    nameless = read_form({"k_min": ["3"]})
    assert nameless.errors == {"name": "Name needs a value"} and nameless.values["name"] == ""
    unticked = read_form({"name": ["x"], "labeling.likert_enabled": ["false"], "labeling.flags": [""]}, base=base)
    assert unticked.data is not None
    assert not unticked.data.settings.labeling.likert_enabled and unticked.data.settings.labeling.flags == []


def test_kinds_choose_their_flags() -> None:
    assistant_flag = "inappropriate for a customer assistant"
    assert assistant_flag in defaults_for("assistant").settings.labeling.flags
    for kind in set(KINDS) - {"assistant"}:
        assert assistant_flag not in defaults_for(kind).settings.labeling.flags, kind
    assert assistant_flag not in ProjectSettings().labeling.flags  # nor a project made through the API
    assert defaults_for("summarisation").settings.labeling.layout == "side-by-side"


def test_service_messages_find_their_field() -> None:
    assert settings_form.error_key_for("a project named 'x' already exists") == "name"
    assert settings_form.error_key_for("pairwise mode compares two answers: k_max must be 2, not 5") == "k_max"
    assert settings_form.error_key_for("something else went wrong") == ""


def test_cross_field_errors_without_a_field_name_go_above_the_form() -> None:
    spec = FieldSpec(key="a", section=None, name="a", group="g", label="A", help="", widget="text", default="")
    from pydantic import BaseModel, ValidationError, model_validator

    class Both(BaseModel):
        a: str = ""

        @model_validator(mode="after")
        def _check(self) -> Both:
            raise ValueError("these values do not go together")

    with pytest.raises(ValidationError) as caught:
        Both()
    assert settings_form.field_errors(caught.value, [spec]) == {"": "these values do not go together"}
