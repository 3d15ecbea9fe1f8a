"""The app's HTTP routes. Mount them under a prefix of your choice; the contract
uses ``/didit/``: ``path("didit/", include("didit_channels.urls"))``.
"""

from django.urls import path

from . import demo, views
from .api import decisions, schema, sessions, tickets
from .webhooks import views as webhook_views

app_name = "didit_channels"

urlpatterns: list = [
    # webhook intake
    path("webhook/", webhook_views.webhook, name="webhook"),
    # live channel (tickets)
    path("api/tickets/", tickets.TicketCreateView.as_view(), name="ticket-create"),
    # sessions API
    path("api/sessions/", sessions.SessionListCreateView.as_view(), name="session-list"),
    path(
        "api/sessions/<str:session_id>/",
        sessions.SessionDetailView.as_view(),
        name="session-detail",
    ),
    # OpenAPI schema of the API above
    path("api/schema/", schema.DiditSchemaView.as_view(), name="api-schema"),
    # decisions (identity data)
    path(
        "api/sessions/<str:session_id>/decision/",
        decisions.SessionDecisionView.as_view(),
        name="session-decision",
    ),
    # pages
    path("status/", views.status_page, name="status"),
    path("desk/", views.desk, name="desk"),
    path("desk/stats/", views.desk_stats, name="desk-stats"),
    path("desk/sessions/<path:session_id>/", views.desk_session, name="desk-session"),
    path("demo/simulate/", demo.simulate, name="simulate"),
]
