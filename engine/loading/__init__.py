"""Reading a rule tree: located YAML, schema checks, plan overrides, compiling each policy into the
model of :mod:`engine.policy`, the vocabulary checks, and bundles of a tree for shipping."""
