"""Settings of the daphne processes the fault, abuse and secrets tests start.

The demo site's own settings (``project.settings``), plus what the
environment variable ``DIDIT_TEST_SERVER_SETTINGS`` (JSON) adds:

* ``"DIDIT_CHANNELS"``: entries merged into the app's settings;
* ``"log_everything": true``: every logger, root and named, at DEBUG to stderr.
"""

import json
import os

from project.settings import *  # noqa: F403
from project.settings import DIDIT_CHANNELS

_EXTRA = json.loads(os.environ.get("DIDIT_TEST_SERVER_SETTINGS") or "{}")

DIDIT_CHANNELS = {**DIDIT_CHANNELS, **_EXTRA.get("DIDIT_CHANNELS", {})}

if _EXTRA.get("log_everything"):
    LOGGING = {
        "version": 1,
        # Loggers configured before this (Django's own, libraries') keep
        # working and are turned up to DEBUG below.
        "disable_existing_loggers": False,
        "formatters": {"full": {"format": "%(levelname)s %(name)s %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "full"}},
        "root": {"handlers": ["stderr"], "level": "DEBUG"},
        "loggers": {
            # Django's defaults give these handlers of their own and stop
            # propagation or filter on DEBUG; route them to the root at DEBUG.
            name: {"handlers": [], "level": "DEBUG", "propagate": True}
            for name in ("django", "django.server", "django.request", "django.db.backends")
        },
    }
