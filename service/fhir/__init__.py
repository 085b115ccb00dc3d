"""FHIR R4 shared by the standards packages (service/crd, service/dtr): reading, indexing, validating."""
