"""App-only helpers for the Streamlit app (``app.py``): image store, cached wrappers, UI pieces.

``images`` has no Streamlit dependency; ``state``, ``compute``, ``recipes`` and ``ui`` need it.
Nothing here computes what the library computes.
"""
