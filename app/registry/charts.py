"""SVG charts of one model version: per-step training curves (loss, accuracy, reward, KL) and the reward
model's reliability diagram. Built on the quality dashboard's SVG helpers (same frame, axes, colours,
CSP-safe attributes, escaped text and a <title>/<desc> so each chart reads without sight)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from markupsafe import Markup

from app.quality.plots import BOTTOM, HEIGHT, LEFT, RIGHT, WIDTH, _empty, _num, _svg, _y_axis

COLOURS = ("#2b5fd9", "#b45309", "#137333", "#7c3aed")


def _ticks(lo: float, hi: float) -> list[float]:
    return [lo + (hi - lo) * i / 4 for i in range(5)]


def _bounds(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def curve_svg(title: str, series: Sequence[tuple[str, Sequence[float]]], x_label: str = "step") -> Markup:
    """One or more named series per step (1-based) on a shared y axis; a single point is drawn as a dot."""
    series = [(name, [float(v) for v in values]) for name, values in series if values]
    if not series:
        return _empty(title, "Nothing was recorded for this chart.")
    values = [v for _, vs in series for v in vs]
    lo, hi = _bounds(values)
    fmt = "{:.3g}" if max(abs(lo), abs(hi)) < 1000 else "{:.0f}"
    body, y = _y_axis(lo, hi, _ticks(lo, hi), fmt)
    n = max(len(vs) for _, vs in series)
    plot_w = WIDTH - LEFT - RIGHT

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    step = max(1, (n - 1) // 6)
    for i in [*range(0, n, step), n - 1] if n > 1 else [0]:
        body.append(f'<text x="{_num(x(i))}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                    f'fill="#5b6575">{i + 1}</text>')
    body.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end" font-size="11" '
                f'fill="#5b6575">{escape(x_label)}</text>')
    described = []
    for j, (name, vs) in enumerate(series):
        colour = COLOURS[j % len(COLOURS)]
        points = " ".join(f"{_num(x(i))},{_num(y(v))}" for i, v in enumerate(vs))
        if len(vs) > 1:
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        if len(vs) <= 40:
            for i, v in enumerate(vs):
                body.append(f'<circle cx="{_num(x(i))}" cy="{_num(y(v))}" r="2.5" fill="{colour}">'
                            f"<title>{escape(f'{name} at {x_label} {i + 1}: {v:.4g}')}</title></circle>")
        if len(series) > 1:
            lx = LEFT + j * 160
            body.append(f'<rect x="{lx}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>')
            body.append(f'<text x="{lx + 14}" y="{HEIGHT - 5}" font-size="11" fill="#1d2430">{escape(name)}</text>')
        described.append(f"{name}: {len(vs)} {x_label}s from {vs[0]:.4g} to {vs[-1]:.4g} "
                         f"(min {min(vs):.4g}, max {max(vs):.4g})")
    return _svg(title, "; ".join(described), body)


def reliability_svg(bins: Sequence[dict[str, float]]) -> Markup:
    """The reliability diagram: observed accuracy per confidence bin (dots sized by pairs) against the
    diagonal of perfect calibration, both axes from 0.5 (a coin flip) to 1."""
    title = "Calibration: predicted confidence against observed accuracy"
    rows = [b for b in bins if b.get("n")]
    if not rows:
        return _empty(title, "No held-out pair was scored, so there is no calibration to show.")
    lo = min(0.5, *(float(b["accuracy"]) for b in rows))
    lo = 0.0 if lo < 0.5 else 0.5
    body, y = _y_axis(lo, 1.0, _ticks(lo, 1.0))
    plot_w = WIDTH - LEFT - RIGHT

    def x(v: float) -> float:
        return LEFT + plot_w * (v - 0.5) / 0.5

    for t in (0.5, 0.625, 0.75, 0.875, 1.0):
        body.append(f'<text x="{_num(x(t))}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                    f'fill="#5b6575">{t:.2f}</text>')
    body.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end" font-size="11" '
                f'fill="#5b6575">predicted confidence</text>')
    body.append(f'<line x1="{_num(x(0.5))}" y1="{_num(y(max(lo, 0.5)))}" x2="{_num(x(1.0))}" y2="{_num(y(1.0))}" '
                f'stroke="#9ca3af" stroke-dasharray="4 3"/>')
    total = sum(int(b["n"]) for b in rows)
    described = []
    for b in rows:
        conf, acc, n = float(b["mean_confidence"]), float(b["accuracy"]), int(b["n"])
        r = 3 + 6 * (n / total) ** 0.5
        tip = f"confidence {conf:.2f}: accuracy {acc:.2f} over {n} pair(s)"
        body.append(f'<circle cx="{_num(x(conf))}" cy="{_num(y(acc))}" r="{_num(r)}" fill="#2b5fd9" '
                    f'fill-opacity="0.8"><title>{escape(tip)}</title></circle>')
        described.append(tip)
    return _svg(title, "; ".join(described), body)
