"""covreq: a rules-as-code engine answering whether a service needs prior authorization.

Library API::

    import engine
    rules = engine.load("rules/")            # raises engine.LoadError listing every problem
    response = rules.evaluate({"payer": "medicare", "services": [{"code": "15823"}]})
"""
from engine.errors import ConditionError, CovreqError, LoadError, Problem, RequestError
from engine.evaluation.ruleset import RuleSet, load

__all__ = ["ConditionError", "CovreqError", "LoadError", "Problem", "RequestError", "RuleSet", "load"]
