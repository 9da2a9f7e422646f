"""Helpers for the web app (``app.py``): files it serves and how results are shown.

Nothing here ranks or filters: that is the engine's job.
"""
