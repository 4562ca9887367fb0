"""`create_app()`: the FastAPI application with its engine, templates and settings on `app.state`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.middleware.trustedhost import TrustedHostMiddleware

from app import __version__
from app.accounts import routes as accounts_routes
from app.auth import routes as auth_routes
from app.auth.throttle import LoginThrottle
from app.browse import routes as browse_routes
from app.db import create_db_engine, make_session_factory
from app.exports import routes as exports_routes
from app.health import routes as health_routes
from app.imports import routes as imports_routes
from app.imports.runner import ImportRunner
from app.jobs import routes as jobs_routes
from app.labeling import api as labeling_api
from app.labeling import routes as labeling_routes
from app.logs import RequestIdMiddleware, configure_logging, resolve_format
from app.members import routes as members_routes
from app.members.access import ProjectAccess, guards
from app.paths import STATIC_DIR
from app.projects import api as projects_api
from app.projects import routes as projects_routes
from app.quality import routes as quality_routes
from app.registry import routes as registry_routes
from app.settings import Settings, get_settings
from app.users import routes as users_routes
from app.web import assets as web_assets
from app.web.errors import install_error_handlers
from app.web.inputs import reject_unstorable_input
from app.web.metrics import MetricsMiddleware
from app.web.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from app.web.templating import create_templates

log = logging.getLogger("prefloop.app")

# Feature routers, in the order their routes are matched.
ROUTERS: tuple[APIRouter, ...] = (
    health_routes.router,
    web_assets.router,
    auth_routes.router,
    users_routes.router,
    accounts_routes.router,
    projects_routes.router,
    projects_api.router,
    imports_routes.router,
    exports_routes.router,
    labeling_routes.router,
    labeling_api.router,
    members_routes.router,
    jobs_routes.router,
    registry_routes.router,
    quality_routes.router,
    browse_routes.router,
)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. Refuses to start with unsafe settings outside dev."""
    settings = settings or get_settings()
    settings.validate_for_serving()
    engine = engine or create_db_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import_runner.recover()
        yield
        import_runner.shutdown()
        engine.dispose()

    # Every route, included routers too, first refuses text no database can store (app.web.inputs).
    # /openapi.json is served by app.health.routes, admins only outside dev; no /docs or /redoc pages.
    app = FastAPI(title="prefloop", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(reject_unstorable_input)])
    app.state.settings = settings
    app.state.secret = settings.effective_secret()
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    import_runner = ImportRunner(app.state.session_factory, settings.data_dir / "uploads")
    app.state.import_runner = import_runner
    app.state.templates = create_templates()
    app.state.login_throttle = LoginThrottle(
        ip_burst=settings.login_ip_burst, ip_per_minute=settings.login_ip_per_minute,
        account_burst=settings.login_account_burst, account_per_minute=settings.login_account_per_minute,
    )

    form_limit = settings.max_request_kb * 1024
    upload_limit = settings.max_upload_bytes

    def limit_for(path: str) -> int:
        return upload_limit if path.endswith("/imports") or path.endswith("/import") else form_limit

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    # A forged Host header gets 400 before any route sees it (PREFLOOP_BASE_URL's host, loopback, extras).
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts, www_redirect=False)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware)
    # Outermost: every log line of a request, and its answer's X-Request-ID header, carry one id (app.logs).
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        # Members-only projects: a non-member's request for one is answered 404 before its route runs.
        paths = [str(getattr(r, "path", "")) for r in router.routes]
        app.include_router(router, dependencies=[ProjectAccess] if guards(paths) else None)
    configure_logging(settings.log_level, resolve_format(settings.log_format, settings.is_dev))
    if not settings.is_dev and not settings.cookies_secure:
        log.warning("PREFLOOP_BASE_URL is %s: session cookies are not marked Secure; serve through a TLS proxy "
                    "and set an https:// base URL", settings.base_url)
    return app
