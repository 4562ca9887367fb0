"""The quality page's reward-model plot and rows: accuracy and calibration on the fixed test set, with the
test-set version each accuracy was measured on (versions from before the test set show their held-out
accuracy, marked as such)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import ModelVersion
from app.quality import plots, service
from tests.factories import make_project


def _score(version: int, accuracy: float, ece: float) -> dict[str, object]:
    return {"test_set_version": version, "accuracy": accuracy, "ece": ece, "n_pairs": 12, "n_prompts": 4}


def test_rows_and_plot_show_each_version_on_its_newest_test_set_version(db: Session) -> None:
    project = make_project(db)
    db.add_all([
        ModelVersion(project_id=project.id, kind="reward", name="reward-v1", base_model="b", status="candidate",
                     metrics={"heldout_accuracy": 0.6}),
        ModelVersion(project_id=project.id, kind="reward", name="reward-v2", base_model="b", status="candidate",
                     metrics={"heldout_accuracy": 0.7, "test_sets": {"1": _score(1, 0.7, 0.2),
                                                                      "2": _score(2, 0.65, 0.15)}}),
        ModelVersion(project_id=project.id, kind="reward", name="reward-v3", base_model="b", status="active",
                     metrics={"heldout_accuracy": 0.8, "test_sets": {"2": _score(2, 0.8, 0.05)}}),
    ])
    db.commit()
    rows = {r["name"]: r for r in service.reward_model_rows(service.get_quality(db, project, fresh=True))}
    assert rows["reward-v1"]["test_set_version"] is None and rows["reward-v1"]["test_accuracy"] is None
    assert (rows["reward-v2"]["test_set_version"], rows["reward-v2"]["test_accuracy"], rows["reward-v2"]["test_ece"]) \
        == (2, 0.65, 0.15)  # the newest test-set version it was scored on, like reward-v3
    assert rows["reward-v3"]["test_set_version"] == 2

    svg = str(plots.rm_accuracy_svg(list(rows.values())))
    assert "accuracy and calibration on the test set" in svg
    assert "reward-v2: 0.650 on test set v2, ECE 0.150" in svg and "ts2" in svg
    assert "reward-v1: 0.600 on held-out split (no test set)" in svg and "ts -" in svg
    assert "No reward-model version" in str(plots.rm_accuracy_svg([]))
