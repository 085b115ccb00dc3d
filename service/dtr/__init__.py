"""Da Vinci DTR: documentation requirements as FHIR Questionnaires generated from the policies, adaptive through SDC $next-question."""
