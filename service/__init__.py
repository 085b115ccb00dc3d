"""covreq's HTTP service: the v1 JSON API and the CDS Hooks / Da Vinci CRD endpoints."""
from service.app import create_app
from service.settings import Settings

__all__ = ["create_app", "Settings"]
