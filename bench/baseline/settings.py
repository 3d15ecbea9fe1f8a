"""Settings of the bare baseline: no apps with models, no middleware, no database.

The channel layer is the demo site's own (``project.settings.CHANNEL_LAYERS``:
``didit_channels.layers.InMemoryChannelLayer``, or Redis when ``REDIS_URL`` is
set), so a benchmark compares both servers on the same layer in the same run.
``BENCH_CHANNEL_LAYERS`` (JSON, the value of a ``CHANNEL_LAYERS`` setting)
overrides it: the layer experiment in ``bench/bench_layers.py`` uses it to try
several configurations.
"""

import json
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "bench-baseline-not-a-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["channels"]
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
ROOT_URLCONF = "bench.baseline.urls"
ASGI_APPLICATION = "bench.baseline.asgi.application"
USE_TZ = True


def _channel_layers() -> dict:
    override = os.environ.get("BENCH_CHANNEL_LAYERS")
    if override:
        return json.loads(override)
    # The demo's layer, whichever it is (in-memory, or Redis when REDIS_URL is
    # set): the comparison is on the same layer. The demo's settings refuse to
    # load without a secret key; ours is as good.
    os.environ.setdefault("DJANGO_SECRET_KEY", SECRET_KEY)
    from project.settings import CHANNEL_LAYERS as demo_layers

    return demo_layers


CHANNEL_LAYERS = _channel_layers()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
