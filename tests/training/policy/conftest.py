"""Fixtures for the policy tests: a tiny Llama policy/reward pair created locally."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.policy.policy_helpers import corpus
from worker.training.tiny import init_tiny


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return init_tiny(tmp_path_factory.mktemp("tiny"), corpus())
