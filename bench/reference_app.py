"""The HTTP reference of every benchmark: a bare Flask app whose one view returns a constant,
served by gunicorn with 2 sync workers (see ARCHITECTURE.md, "Performance targets")."""
from flask import Flask

app = Flask(__name__)


@app.post("/<path:anything>")
@app.get("/<path:anything>")
def constant(anything):
    return "ok"
