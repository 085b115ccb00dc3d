"""SMART Backend Services for the ``/fhir`` endpoints: registered clients authenticate with a JWT
they sign (``private_key_jwt``), get a short-lived access token for ``system/*`` scopes from the token
endpoint, and send it as ``Authorization: Bearer`` (docs/operations.md, "SMART Backend Services").

The paths below are open: a client reads the discovery document and asks for a token without one.
"""
from __future__ import annotations

from service.dtr.catalogue import PREFIX

#: The SMART discovery document.
DISCOVERY_PATH = PREFIX + "/.well-known/smart-configuration"
#: The OAuth 2.0 token endpoint (advertised in the discovery document and the CapabilityStatement).
TOKEN_PATH = PREFIX + "/auth/token"
PUBLIC_PATHS = frozenset({DISCOVERY_PATH, TOKEN_PATH})
