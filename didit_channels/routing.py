"""ASGI routing. In your ASGI application::

    from didit_channels.routing import http_application, websocket_application

    application = ProtocolTypeRouter({
        "http": http_application(get_asgi_application()),
        "websocket": websocket_application(),
    })

``http_application`` is optional: it serves the webhook, and ticket requests
of API clients, ahead of Django's middleware stack (see ``fastpath``);
without it the Django views answer.

or, to mount the socket beside your own consumers, wrap
``didit_channels.routing.websocket_urlpatterns`` with
``didit_channels.live.origin.OriginValidator`` yourself. The socket needs no
``AuthMiddlewareStack``: it authenticates by ticket, not by cookie.
"""

from typing import Any

from channels.routing import URLRouter
from django.urls import path

from .fastpath import FastPaths
from .live.consumers import StatusConsumer
from .live.origin import OriginValidator

# Where the ticket API tells clients to connect (CONTRACT.md).
SOCKET_PATH = "/ws/didit/"

websocket_urlpatterns = [
    path(SOCKET_PATH.lstrip("/"), StatusConsumer.as_asgi(), name="didit_channels_ws"),
]


def websocket_application() -> Any:
    """The socket routes behind the app's origin check (CONTRACT: 403 before accept)."""
    return OriginValidator(URLRouter(websocket_urlpatterns))


def http_application(django_http_application: Any, *, api_tickets: bool = True) -> Any:
    """The site's HTTP application with the app's fast paths in front (``fastpath``).

    ``api_tickets=False`` leaves ticket requests to Django even from API
    clients: for sites whose DRF authentication classes need a middleware
    (``request.session``, a ``request.user`` set by middleware) or whose
    middleware must see every API request.
    """
    return FastPaths(django_http_application, api_tickets=api_tickets)
