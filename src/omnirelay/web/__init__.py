"""The admin console served at ``/admin``: ``console.py`` and the static pages in ``static/``."""
