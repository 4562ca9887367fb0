"""Server-rendered SVG plots for the quality dashboard: agreement over time, the model leaderboard with
CI whiskers, reward-model accuracy and calibration per version on the fixed test set.

Only SVG presentation attributes and classes are used (the CSP forbids inline style attributes), every
text is XML-escaped, and each plot carries a <title>/<desc> so it reads without JavaScript or sight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

from app.models.enums import VersionStatus

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40
SERIES = (
    ("pairwise_agreement", "pairwise agreement", "#2b5fd9"),
    ("kendall_tau_b", "Kendall tau-b", "#137333"),
    ("krippendorff_alpha", "Krippendorff alpha", "#b45309"),
)


def _num(x: float) -> str:
    return f"{x:.1f}"


def _svg(title: str, desc: str, body: list[str], height: int = HEIGHT) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )
    # Safe by construction: every piece of text interpolated into `body` went through `escape`.
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704


def _empty(title: str, message: str) -> Markup:
    return _svg(title, message, [
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="plot-empty" fill="#5b6575">'
        f"{escape(message)}</text>"
    ])


def _y_axis(lo: float, hi: float, ticks: Sequence[float], fmt: str = "{:.2f}") -> tuple[list[str], Any]:
    plot_h = HEIGHT - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - lo) / (hi - lo))

    out = []
    for t in ticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y(t))}" y2="{_num(y(t))}" '
                   f'stroke="#d9dee6" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 6}" y="{_num(y(t) + 4)}" text-anchor="end" font-size="11" '
                   f'fill="#5b6575">{escape(fmt.format(t))}</text>')
    return out, y


def agreement_svg(rows: Sequence[dict[str, Any]]) -> Markup:
    """Pairwise agreement, tau-b and alpha per UTC day (one line each; days without a value are gaps)."""
    title = "Agreement over time"
    if not rows:
        return _empty(title, "No day has a prompt ranked by two or more humans yet.")
    values = [r[k] for r in rows for k, _, _ in SERIES if r.get(k) is not None]
    lo = min([0.0, *values])
    lo = -1.0 if lo < 0 else 0.0
    body, y = _y_axis(lo, 1.0, [lo, (lo + 1) / 2, 1.0] if lo < 0 else [0, 0.25, 0.5, 0.75, 1.0])
    plot_w = WIDTH - LEFT - RIGHT
    n = len(rows)

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    step = max(1, n // 6)
    for i, r in enumerate(rows):
        if i % step == 0 or i == n - 1:
            body.append(f'<text x="{_num(x(i))}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                        f'fill="#5b6575">{escape(str(r["day"]))}</text>')
    for key, label, colour in SERIES:
        segment: list[str] = []
        for i, r in enumerate(rows):
            v = r.get(key)
            if v is None:
                if len(segment) > 1:
                    body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(segment)}"/>')
                segment = []
                continue
            segment.append(f"{_num(x(i))},{_num(y(v))}")
            tip = "{}: {} {:.3f} ({} prompts)".format(r["day"], label, v, r.get("n_prompts_multi", 0))
            body.append(f'<circle cx="{_num(x(i))}" cy="{_num(y(v))}" r="3" fill="{colour}">'
                        f"<title>{escape(tip)}</title></circle>")
        if len(segment) > 1:
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(segment)}"/>')
    for j, (_, label, colour) in enumerate(SERIES):
        lx = LEFT + j * 170
        body.append(f'<rect x="{lx}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{lx + 14}" y="{HEIGHT - 5}" font-size="11" fill="#1d2430">{escape(label)}</text>')
    desc = "; ".join(
        f"{r['day']}: " + ", ".join(f"{label} {r[k]:.3f}" for k, label, _ in SERIES if r.get(k) is not None)
        for r in rows
    )
    return _svg(title, desc, body)


def leaderboard_svg(rows: Sequence[dict[str, Any]]) -> Markup:
    """Models as dots on the Elo-like score axis with 95 % bootstrap CI whiskers, best on top."""
    title = "Model leaderboard"
    if not rows:
        return _empty(title, "No human ranking compares completions of two different models yet.")
    row_h = 28
    height = TOP + BOTTOM + row_h * len(rows)
    xs = [v for r in rows for v in (r["score"], r.get("ci_low"), r.get("ci_high")) if v is not None]
    lo, hi = min([0.0, *xs]), max([0.0, *xs])
    if hi - lo < 1e-9:
        lo, hi = lo - 50, hi + 50
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    name_w = 150
    plot_l, plot_w = LEFT + name_w - 40, WIDTH - RIGHT - (LEFT + name_w - 40)

    def x(v: float) -> float:
        return float(plot_l + plot_w * (v - lo) / (hi - lo))

    body = [f'<line x1="{_num(x(0))}" x2="{_num(x(0))}" y1="{TOP}" y2="{height - BOTTOM}" stroke="#9ca3af" '
            f'stroke-dasharray="4 3"/>']
    for t in (lo + pad, 0.0, hi - pad):
        body.append(f'<text x="{_num(x(t))}" y="{height - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                    f'fill="#5b6575">{t:.0f}</text>')
    for i, r in enumerate(rows):
        cy = TOP + row_h * i + row_h / 2
        name = str(r["name"])
        short = name if len(name) <= 22 else name[:21] + "…"
        body.append(f'<text x="{plot_l - 8}" y="{_num(cy + 4)}" text-anchor="end" font-size="12" fill="#1d2430">'
                    f"{escape(short)}<title>{escape(name)}</title></text>")
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            a, b = x(r["ci_low"]), x(r["ci_high"])
            body.append(f'<line x1="{_num(a)}" x2="{_num(b)}" y1="{_num(cy)}" y2="{_num(cy)}" stroke="#1d2430" '
                        f'stroke-width="1.5"/>')
            for end in (a, b):
                body.append(f'<line x1="{_num(end)}" x2="{_num(end)}" y1="{_num(cy - 5)}" y2="{_num(cy + 5)}" '
                            f'stroke="#1d2430" stroke-width="1.5"/>')
        ci = (" (95% CI {:.0f} to {:.0f})".format(r["ci_low"], r["ci_high"])
              if r.get("ci_low") is not None and r.get("ci_high") is not None else "")
        tip = "{}: {:.0f}{}".format(name, r["score"], ci)
        body.append(f'<circle cx="{_num(x(r["score"]))}" cy="{_num(cy)}" r="5" fill="#2b5fd9">'
                    f"<title>{escape(tip)}</title></circle>")
    desc = "; ".join(f"{r['name']}: score {r['score']:.0f}" for r in rows)
    return _svg(title, desc, body, height)


def rm_accuracy_svg(rows: Sequence[dict[str, Any]]) -> Markup:
    """Pairwise accuracy per reward-model version on the fixed test set (bars; 0.5 = chance, dashed) with
    its calibration error (ECE, a diamond on the same 0-1 axis) and the test-set version under each bar
    ("ts2"); a version never measured on the test set shows its held-out accuracy as trained ("ts -")."""
    title = "Reward-model accuracy and calibration on the test set"
    measured = [r for r in rows if r.get("test_accuracy") is not None or r.get("heldout_accuracy") is not None]
    if not measured:
        return _empty(title, "No reward-model version has a test-set or held-out accuracy yet.")
    body, y = _y_axis(0.0, 1.0, [0, 0.25, 0.5, 0.75, 1.0])
    body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y(0.5))}" y2="{_num(y(0.5))}" '
                f'stroke="#b42318" stroke-dasharray="4 3"/>')
    plot_w = WIDTH - LEFT - RIGHT
    slot = plot_w / len(measured)
    bar = min(48.0, slot * 0.6)
    described = []
    for i, r in enumerate(measured):
        on_test = r.get("test_accuracy") is not None
        acc = float(r["test_accuracy"] if on_test else r["heldout_accuracy"])
        ts = f"ts{r['test_set_version']}" if on_test and r.get("test_set_version") is not None else "ts -"
        cx = LEFT + slot * (i + 0.5)
        fill = "#137333" if r.get("status") == VersionStatus.ACTIVE else "#2b5fd9"
        where = f"test set v{r.get('test_set_version')}" if on_test else "held-out split (no test set)"
        tip = "{} ({}): accuracy {:.3f} on {}".format(r["name"], r.get("status"), acc, where)
        body.append(f'<rect x="{_num(cx - bar / 2)}" y="{_num(y(acc))}" width="{_num(bar)}" '
                    f'height="{_num(y(0) - y(acc))}" fill="{fill}"><title>{escape(tip)}</title></rect>')
        text = f"{r['name']}: {acc:.3f} on {where}"
        ece = r.get("test_ece") if on_test else None
        if isinstance(ece, int | float):
            ey = y(min(max(float(ece), 0.0), 1.0))
            ece_tip = "{}: ECE {:.3f}".format(r["name"], float(ece))
            body.append(f'<path d="M{_num(cx)} {_num(ey - 5)} L{_num(cx + 5)} {_num(ey)} L{_num(cx)} {_num(ey + 5)} '
                        f'L{_num(cx - 5)} {_num(ey)} Z" fill="#b45309"><title>{escape(ece_tip)}</title></path>')
            text += f", ECE {float(ece):.3f}"
        described.append(text)
        label = str(r["name"])
        body.append(f'<text x="{_num(cx)}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" font-size="11" '
                    f'fill="#5b6575">{escape(label if len(label) <= 14 else label[:13] + "…")}</text>')
        body.append(f'<text x="{_num(cx)}" y="{HEIGHT - BOTTOM + 27}" text-anchor="middle" font-size="10" '
                    f'fill="#5b6575">{escape(ts)}</text>')
    lx = WIDTH - RIGHT - 190
    body.append(f'<rect x="{lx}" y="{TOP}" width="10" height="10" fill="#2b5fd9"/>')
    body.append(f'<text x="{lx + 14}" y="{TOP + 9}" font-size="11" fill="#1d2430">accuracy</text>')
    body.append(f'<path d="M{lx + 85} {TOP} L{lx + 90} {TOP + 5} L{lx + 85} {TOP + 10} L{lx + 80} {TOP + 5} Z" '
                f'fill="#b45309"/>')
    body.append(f'<text x="{lx + 96}" y="{TOP + 9}" font-size="11" fill="#1d2430">calibration error</text>')
    return _svg(title, "; ".join(described), body)
