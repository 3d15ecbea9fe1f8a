"""Pages: the end user's status page and the operators' live desk in the admin.

Both pages render the current state on the server, then ``live.js`` opens the
socket and resumes from the cursor the page was rendered at, so nothing that
happens between rendering and connecting is lost. No inline script: data
reaches the modules through ``data-*`` attributes and ``json_script``, so the
pages work under a strict Content-Security-Policy.

Templates (override them in your project's templates directory):
``didit_channels/status.html`` (with ``_session.html``, ``_connection.html``,
``_simulate.html``) and ``admin/didit_channels/desk.html``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import desk as desk_figures
from .models import StatusEvent, VerificationSession
from .statuses import KNOWN_STATUSES

VIEW_ALL = "didit_channels.view_all_sessions"
# Sessions shown on the status page; a user rarely has more than a handful.
STATUS_PAGE_SESSIONS = 50
SESSION_PLACEHOLDER = "__session__"


@never_cache
@login_required
@require_GET
def status_page(request: HttpRequest) -> HttpResponse:
    """The signed-in user's sessions, each with its status history, updated live."""
    # Read before the sessions: anything committed later has a higher id and
    # comes back through ``resume``; anything in between is rendered and also
    # resumed, and the page drops the id it already shows.
    cursor = desk_figures.latest_event_id(user=request.user)
    sessions = list(
        VerificationSession.objects.filter(user=request.user)
        .order_by("-created_at")
        .prefetch_related(Prefetch("events", queryset=StatusEvent.objects.order_by("-id")))[
            :STATUS_PAGE_SESSIONS
        ]
    )
    context = {
        "sessions": sessions,
        "cursor": cursor,
        "simulate": settings.DEBUG,
        "statuses": KNOWN_STATUSES,
    }
    return render(request, "didit_channels/status.html", context)


@never_cache
@login_required
@permission_required(VIEW_ALL, raise_exception=True)
@require_GET
def desk(request: HttpRequest) -> HttpResponse:
    """The live desk: every user's status changes as they happen, and the queue at a glance."""
    cursor = desk_figures.latest_event_id()
    recent = list(
        StatusEvent.objects.select_related("session", "user").order_by("-id")[
            : desk_figures.RECENT_EVENTS
        ]
    )
    stats = desk_figures.desk_stats()
    peak = max((row["count"] for row in stats["counts"]), default=0)
    for row in stats["counts"]:
        row["percent"] = round(100 * row["count"] / peak, 1) if peak else 0
    opts = VerificationSession._meta
    context = {
        **admin.site.each_context(request),
        "title": "Live desk",
        "opts": opts,
        "app_label": opts.app_label,
        "events": recent,
        "cursor": cursor,
        "stats": stats,
        "median_text": format_duration(stats["median_seconds"]),
        "session_url_template": reverse("didit_channels:desk-session", args=[SESSION_PLACEHOLDER]),
    }
    return render(request, "admin/didit_channels/desk.html", context)


@never_cache
@login_required
@permission_required(VIEW_ALL, raise_exception=True)
@require_GET
def desk_stats(request: HttpRequest) -> JsonResponse:
    """The desk's figures (sessions by status, median time from start to decision), and
    the names of the users in the latest events, which status frames give by pk only."""
    return JsonResponse({**desk_figures.desk_stats(), "users": desk_figures.recent_usernames()})


@login_required
@permission_required(VIEW_ALL, raise_exception=True)
@require_GET
def desk_session(request: HttpRequest, session_id: str) -> HttpResponse:
    """Redirect from a Didit session id (what the socket sends) to the session's admin page."""
    session = get_object_or_404(VerificationSession, session_id=session_id)
    opts = session._meta
    return redirect(f"admin:{opts.app_label}_{opts.model_name}_change", session.pk)


def format_duration(seconds: float | None) -> str:
    """Text like "4 min 12 s" for the desk (the same rules as ``desk.js``)."""
    if seconds is None:
        return "–"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
