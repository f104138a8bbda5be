"""GET /api/search answered ahead of FastAPI, behind the guard: FastAPI's routing, its
request handler (dependencies solved, a Request made) and the exception middleware cost a
search more CPU than its own Python does. The answer is api.search_answer's, as the route
(which stays, for /docs) gives it; an unexpected error goes to the app's handler as before."""

from __future__ import annotations

from semsql.serve.api import search_answer
from semsql.serve.context import Context
from semsql.serve.guard import ASGIApp, Receive, Scope, Send

PATH = "/api/search"


class SearchRoute:
    def __init__(self, app: ASGIApp, context: Context) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "GET"
            and not scope.get("root_path")
        ):
            response = await search_answer(self.context, scope["query_string"])
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
