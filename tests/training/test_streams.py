"""Counter-based sampling streams: uniform, independent across rows and draws, and an exact categorical draw."""

from __future__ import annotations

import pytest
import torch

from worker.training.streams import draw, stream_ids, uniforms


def test_stream_ids_depend_only_on_their_coordinates() -> None:
    all_rows = stream_ids(7, [10, 11, 12], k=3)
    assert all_rows.shape == (9, 2)
    assert torch.equal(stream_ids(7, [12], k=3), all_rows[6:9])  # prompt 12's rows, alone or among others
    assert torch.equal(stream_ids(7, [11, 10], k=3)[3:], all_rows[:3])
    assert not torch.equal(stream_ids(8, [10], k=3), all_rows[:3])  # another seed, other streams
    assert len({tuple(r) for r in all_rows.tolist()}) == 9
    assert int(all_rows.min()) >= 0 and int(all_rows.max()) < 2**32


def test_uniforms_are_uniform_and_uncorrelated() -> None:
    streams = stream_ids(0, range(2000), k=1)
    draws = torch.stack([uniforms(streams, t) for t in range(50)])  # (draw index, row)
    flat = draws.flatten()
    assert float(flat.min()) > 0.0 and float(flat.max()) < 1.0
    n = flat.numel()  # 100,000 draws
    counts = torch.histc(flat.float(), bins=20, min=0.0, max=1.0)
    chi2 = float(((counts - n / 20) ** 2 / (n / 20)).sum())
    assert chi2 < 50.0  # 19 degrees of freedom: the 0.999 quantile is 43.8
    assert abs(float(flat.mean()) - 0.5) < 0.005
    # Consecutive draws of one stream, and neighbouring streams at one draw, are uncorrelated.
    assert abs(float(torch.corrcoef(torch.stack([draws[:-1].flatten(), draws[1:].flatten()]))[0, 1])) < 0.02
    assert abs(float(torch.corrcoef(torch.stack([draws[:, :-1].flatten(), draws[:, 1:].flatten()]))[0, 1])) < 0.02
    with pytest.raises(ValueError, match="out of range"):
        uniforms(streams, 2**20)


def test_draw_inverts_the_cumulative_distribution() -> None:
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3, 0.0]])
    grid = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000  # evenly spaced uniforms
    tokens = draw(probs.expand(1000, -1), grid)
    assert torch.bincount(tokens, minlength=5).tolist() == [100, 0, 600, 300, 0]  # exact on an even grid
    # The largest possible uniform never lands on a trailing zero-probability token.
    assert draw(probs, torch.tensor([1 - 0.5 / 2**32], dtype=torch.float64)).tolist() == [3]
    # Unnormalised rows (e.g. float error after top-p) are scaled by their own mass.
    assert draw(torch.tensor([[2.0, 2.0]]), torch.tensor([0.75], dtype=torch.float64)).tolist() == [1]


def test_draws_follow_the_distribution() -> None:
    probs = torch.softmax(torch.tensor([1.0, 2.0, 0.5, 3.0]), -1)
    streams = stream_ids(3, range(20000), k=1)
    tokens = draw(probs.expand(20000, -1), uniforms(streams, 0))
    freq = torch.bincount(tokens, minlength=4).double() / 20000
    assert torch.allclose(freq, probs.double(), atol=0.01)
