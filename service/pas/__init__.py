"""Da Vinci PAS: ``Claim/$submit`` and ``Claim/$inquire`` answered from the rules (CMS-0057-F part 3), and the subscriptions that announce decisions.

``versions`` the PAS versions served and how a request picks one, ``request`` a request Bundle
read into what the rules decide by, ``evidence`` the supporting documentation it carries (DTR
QuestionnaireResponses, verified when covreq signed them, and DocumentReferences), ``decide`` each
item through the engine (certified or pended, never denied), ``response`` the response Bundle,
``clock`` the decision deadline, ``store`` the database rows, ``onfile`` the authorizations on file
added to later v1 and CRD questions, ``routes`` the endpoints; ``subscriptions``, ``subscription_store``, ``notifier`` and
``subscription_routes`` the R4 Subscriptions Backport of pended requests; ``reviewers``, ``review``, ``review_store`` and
``review_routes`` the payer's reviewers and their decisions; ``pa_metrics`` and ``metrics_cli`` the
metrics CMS-0057-F requires payers to publish.
"""
