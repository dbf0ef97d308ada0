"""WSGI entry point: the app any WSGI server can serve (``services.gateway.server`` does by default)."""
from services.gateway.app import create_app

app = create_app()
