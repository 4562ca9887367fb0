"""Turning untrusted text (model output, prompts, guidelines) into safe HTML: markdown without raw HTML,
Pygments for code, then nh3 as the final allow-list so nothing executable survives."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "span", "div", "a",
}
_ALLOWED_ATTRIBUTES = {"span": {"class"}, "div": {"class"}, "code": {"class"}, "pre": {"class"}, "a": {"href", "title"}}
_URL_SCHEMES = {"http", "https", "mailto"}


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang.strip()) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it falls back to its own escaped <pre><code>
    return str(highlight(code, lexer, HtmlFormatter(nowrap=False, cssclass="hl")))


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # "js-default" disables raw HTML and unsafe link schemes; linkify stays off so text URLs stay text.
    md = MarkdownIt("js-default", {"html": False, "highlight": _highlight, "breaks": True})
    md.enable("table")
    md.enable("strikethrough")
    return md


def render_markdown(text: str) -> Markup:
    """Safe HTML for untrusted markdown. Links open nothing special and carry rel=noopener noreferrer nofollow."""
    cleaned = text.replace("\x00", "\ufffd")
    html = _markdown().render(cleaned)
    safe = nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return Markup(safe)  # noqa: S704 - nh3 output is the sanitised allow-list


def render_plain(text: str) -> Markup:
    """Escaped text with line breaks kept (the raw-text view)."""
    return escape(text.replace("\x00", "\ufffd"))


def pygments_css() -> str:
    """The stylesheet for highlighted code, served as a static-like route (no inline styles under our CSP)."""
    return str(HtmlFormatter(cssclass="hl").get_style_defs(".hl"))
