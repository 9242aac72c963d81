"""A host application that mounts processman's API and dashboard under /processman
(SPEC §5: a library first), served by uvicorn on 127.0.0.1:argv[2]; argv[1] is the config."""

import sys
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from processman import ProcessManager, load_config
from processman.adapters.http import create_app

manager = ProcessManager(load_config(sys.argv[1]))


@asynccontextmanager
async def lifespan(app):
    async with manager:
        yield


async def home(request):
    return PlainTextResponse("the host's own page")


app = Starlette(
    routes=[Route("/", home), Mount("/processman", app=create_app(manager))], lifespan=lifespan
)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
