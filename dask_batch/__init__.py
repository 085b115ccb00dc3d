"""``covreq batch`` on a Dask cluster: a back-end of :func:`engine.worklists.batch.run` (``pip install 'covreq[dask]'``)."""
from .backend import DaskBackend, Tls, partitions

__all__ = ["DaskBackend", "Tls", "partitions"]
