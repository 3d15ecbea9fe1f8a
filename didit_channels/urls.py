"""Mount under a prefix of your choice; the contract uses ``/didit/``::

path("didit/", include("didit_channels.urls")),
"""

app_name = "didit_channels"

urlpatterns: list = [
    # webhook intake
    # live channel (tickets)
    # sessions API and pages
]
