"""The web dashboard at ``/ui``: server-rendered pages over the service (see :mod:`.routes`),
SVG charts of a job's result (:mod:`.charts`, :mod:`.results`), logins (:mod:`.session`)."""

from .routes import ui_router
from .session import Sessions

__all__ = ["Sessions", "ui_router"]
