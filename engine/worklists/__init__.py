"""Batch worklists: orders read from CSV, JSON Lines or Parquet, answered by a back-end, written out."""
