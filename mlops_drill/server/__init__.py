"""The agent API (issue 7): the drills over HTTP for AI agents, graded with the people's rubric.

``create_app(ctx_factory)`` builds the FastAPI app, ``client`` is the Python
client, ``serving(app)`` runs an app on an ephemeral loopback port.
"""
from mlops_drill.server.app import create_app
from mlops_drill.server.serve import serving

__all__ = ["create_app", "serving"]
