"""The crew's web page, served by the API's own ingress: ``mount_web(api)`` adds it to the app."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from serving.web.consent import consent_web_router
from serving.web.routes import STATIC, web_router
from serving.web.session import SessionAuth


def swagger_assets() -> Path:
    """Swagger UI 5 (it reads OpenAPI 3.1, which FastAPI writes), shipped in the fastapi-offline wheel."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def serve_docs_offline(api: FastAPI) -> None:
    """Replace FastAPI's /docs (Swagger UI from a CDN) and /redoc with pages whose assets the app serves."""
    api.router.routes[:] = [r for r in api.router.routes if getattr(r, "path", None) not in (api.docs_url, api.redoc_url)]
    api.mount("/web/docs-assets", StaticFiles(directory=swagger_assets()), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=api.openapi_url, title=f"{api.title} API",
                                   swagger_js_url="/web/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/web/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/web/docs-assets/favicon.png")


def mount_web(api: FastAPI) -> None:
    api.add_middleware(SessionAuth)
    serve_docs_offline(api)
    api.include_router(web_router())
    api.include_router(consent_web_router())
    api.mount("/web/static", StaticFiles(directory=STATIC), name="web-static")
