"""A one-route ASGI app for uvicorn (``uvicorn asgi_app:app --fd 3``): answers its pid."""

import os


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = f"{os.environ.get('PROCESSMAN_ID', '?')} {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
