"""The admin token the service tests configure (``POST /admin/reload`` is refused without one)."""
from __future__ import annotations

ADMIN_TOKEN = "test-admin-token-7f3c9a1e"
#: The header that authorizes an admin call of a service built with :data:`ADMIN_TOKEN`.
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
