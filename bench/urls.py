"""The demo site's URLs plus ``/bench/noop/``: the same middleware stack, no work.

The no-op view is the yardstick a benchmark divides by: it goes through
daphne, Django's ASGI handler, every middleware and a sync view in the
thread pool, just like the webhook view, and then does nothing.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from project.urls import urlpatterns as demo_urlpatterns


@csrf_exempt
def noop(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"outcome": "noop"}', content_type="application/json")


urlpatterns = [path("bench/noop/", noop, name="bench-noop"), *demo_urlpatterns]
