"""The error of the FHIR operations: an HTTP status, a message and where in the input it is."""
from __future__ import annotations


class OperationError(Exception):
    """A FHIR request covreq cannot answer; written as an OperationOutcome with ``status``."""

    def __init__(self, status: int, message: str, expression: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.expression = status, message, expression
