"""Tiny local models (random weights, locally trained tokenizer) shared by the worker tests."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers.utils import logging as hf_logging

    from tests.worker.loop_helpers import PROMPTS
    from worker.training.tiny import default_texts, init_tiny

    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    return init_tiny(tmp_path_factory.mktemp("tiny"), default_texts() + PROMPTS, seed=0, vocab_size=384)
