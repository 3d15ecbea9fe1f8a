"""The baseline ASGI app: `daphne bench.baseline.asgi:application`."""

import json
import os
import secrets

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import BareConsumer  # noqa: E402


async def raw_ticket(scope, receive, send):
    """``POST /raw-ticket/``: 256 random bits straight from ASGI, no Django at all.

    For bench_handshake's lowest floor: what an HTTP request costs this
    daphne process before any framework runs (views.ticket is the same
    answer through Django's handler).
    """
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = json.dumps({"ticket": secrets.token_urlsafe(32)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def http(scope, receive, send):
    if scope["path"] == "/raw-ticket/":
        await raw_ticket(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": URLRouter([path("ws/", BareConsumer.as_asgi())]),
    }
)

# The same process tuning as the demo's project/asgi.py, so that the two
# servers differ only in what the app does.
from didit_channels.tuning import tune_gc  # noqa: E402

tune_gc()
