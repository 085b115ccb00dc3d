"""Answering requests: a request read into facts, evaluated against a loaded rule set, with memo,
explain traces and what each policy needs to know."""
