"""What a payer publishes from its rules: the items and services that need prior authorization."""
