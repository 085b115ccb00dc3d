"""Da Vinci PAS: prior-authorization requests, their decisions and the subscriptions that announce them."""
