"""The bare Channels baseline every benchmark compares against.

A WebSocket consumer with no authentication and no database that joins a
group and forwards what the group receives, and a plain async Django view
(no middleware) that ``group_send``s to it. Served by daphne exactly like the
demo site, on the same channel layer, so a ratio against it isolates what
didit_channels itself costs. See ``settings.py`` for how the layer is chosen.
"""
