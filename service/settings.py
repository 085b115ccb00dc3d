"""Service settings: defaults, overridable from the environment (``COVREQ_*``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PAYERS = Path(__file__).with_name("payers.yaml")


@dataclass(frozen=True)
class Settings:
    """Knobs of one running service.

    ``max_body_bytes`` caps request bodies (413 above it); ``payers`` is the CRD payer mapping
    file; ``admin_token``, when set, must be sent as ``Authorization: Bearer <token>`` to
    ``POST /admin/reload``; ``json_logs`` switches the log format to one JSON object per line.
    """

    max_body_bytes: int = 1_048_576
    payers: Path = DEFAULT_PAYERS
    admin_token: str | None = None
    json_logs: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Settings from ``COVREQ_MAX_BODY_BYTES``, ``COVREQ_PAYERS``, ``COVREQ_ADMIN_TOKEN``,
        ``COVREQ_JSON_LOGS`` (``0`` for plain text); absent variables keep the defaults."""
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            max_body_bytes=int(env.get("COVREQ_MAX_BODY_BYTES", defaults.max_body_bytes)),
            payers=Path(env.get("COVREQ_PAYERS", str(defaults.payers))),
            admin_token=env.get("COVREQ_ADMIN_TOKEN") or None,
            json_logs=env.get("COVREQ_JSON_LOGS", "1") != "0",
        )
