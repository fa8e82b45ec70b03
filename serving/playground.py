"""`--playground`: the REST port also serves the playground page at /playground/.

Not a TensorFlow Serving feature. The page (the folder `serving/playground/`: HTML, CSS
and plain JavaScript, nothing fetched from elsewhere) talks to the server only through the
REST API, so any static file server can serve the folder too; from another origin the REST
server then needs `--rest_api_enable_cors_support`, ours or tensorflow_model_server.
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

PAGE = Path(__file__).with_name("playground")


def add_playground(app: web.Application) -> None:
    """Serve PAGE's files under /playground/ (its index.html at /playground/).

    aiohttp resolves the longest registered prefix first, so these routes win over the REST
    API's catch-all route whatever the order they were added in.
    """
    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "index.html")

    async def with_slash(request: web.Request) -> web.Response:
        raise web.HTTPFound("/playground/" + (f"?{request.query_string}" if request.query_string else ""))

    app.router.add_get("/playground", with_slash)
    app.router.add_get("/playground/", index)
    app.router.add_static("/playground/", PAGE)
