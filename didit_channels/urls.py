"""Mount under a prefix of your choice; the contract uses ``/didit/``::

    path("didit/", include("didit_channels.urls")),
"""

from django.urls import path  # noqa: F401

from .api import decisions

app_name = "didit_channels"

urlpatterns: list = [
    # webhook intake
    # live channel (tickets)
    # sessions API
    # decisions (identity data)
    path(
        "api/sessions/<str:session_id>/decision/",
        decisions.SessionDecisionView.as_view(),
        name="session-decision",
    ),
    # pages
]
