"""A real OpenID provider (npm oidc-provider) that the tests start: see provider.py."""
