"""CDS Hooks / Da Vinci CRD: FHIR in, v1 requests to the engine, coverage information out."""
