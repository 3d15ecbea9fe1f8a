"""ASGI entry point of the demo site: HTTP through Django (the webhook on the app's
fast path ahead of it), WebSockets through didit_channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: the routing imports models.
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from didit_channels.routing import http_application, websocket_application  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:
    # Daphne serves no static files by itself; in the demo, Django does.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        "http": http_application(http_app),
        "websocket": websocket_application(),
    }
)

# Last, once everything above is imported: a full garbage collection visits
# every open socket's objects and pauses them all (didit_channels/tuning.py).
from didit_channels.tuning import tune_gc  # noqa: E402

tune_gc()
