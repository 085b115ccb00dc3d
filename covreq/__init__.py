"""The ``covreq`` command line: the top floor, above the library (engine), the service and the batch back-ends."""
