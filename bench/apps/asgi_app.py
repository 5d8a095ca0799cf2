"""A minimal ASGI app for the uvicorn figures: names the process and generation, like
tests/fixtures/wsgi_app.py does for gunicorn."""

import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = "pid={} gen={} path={}\n".format(os.getpid(), os.environ.get("HANDOFF_GENERATION", "0"), scope["path"]).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
