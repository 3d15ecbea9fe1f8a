"""didit_channels: live Didit identity-verification status for Django sites.

A webhook comes in (``webhooks``), a session's state changes (``state``), and
the change goes out to the sockets that may see it (``live``).
"""

__version__ = "0.1.0"
