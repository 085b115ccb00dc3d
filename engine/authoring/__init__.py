"""Tooling for policy authors: lint, fmt, diff, coverage, the tests files and their reports."""
