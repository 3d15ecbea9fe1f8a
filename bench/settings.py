"""The demo site as benchmarked: project.settings plus a no-op view (bench/urls.py).

Everything else (middleware, database options, channel layer, logging) is the
demo's own, so a benchmark measures what ``make demo`` serves.
"""

from project.settings import *  # noqa: F403 - the demo's settings, unchanged

ROOT_URLCONF = "bench.urls"
