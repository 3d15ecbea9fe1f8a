"""The app's REST API (Django REST framework views)."""
