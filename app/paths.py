"""Where the templates and static files are: the copy bundled in an installed wheel, else the checkout's.

A wheel carries `templates/` and `static/` inside the package as `app/_bundled/` (see pyproject.toml);
a checkout or an editable install has no such copy and uses the top-level folders beside `app/`.
Migrations need no lookup: `migrations` is a package of its own in either case.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED_DIR = _PACKAGE_DIR / "_bundled"
_CHECKOUT_DIR = _PACKAGE_DIR.parent


def asset_dir(name: str) -> Path:
    """The folder `name` ("templates" or "static"): bundled in the package if present, else the checkout's."""
    bundled = _BUNDLED_DIR / name
    return bundled if bundled.is_dir() else _CHECKOUT_DIR / name


TEMPLATE_DIR = asset_dir("templates")
STATIC_DIR = asset_dir("static")
