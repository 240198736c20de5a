"""An identity-aware gateway in front of a self-hosted Prefect server.

Pipelines present their own short-lived identity (a Bitbucket step OIDC token, or a gateway session
token obtained for it by RFC 8693 token exchange at ``/token``); the gateway verifies it, decides by a
policy what the caller may do, forwards what is allowed with the server's auth string (which only the
gateway holds) and writes one audit line per decision. It never imports ``prefect``.

Modules: ``cli`` (command line, settings), ``policy`` (rules and validation), ``identity`` (JWKS and
session tokens), ``paths`` (normalisation), ``rights`` (the endpoint → right table), ``authorize``
(decisions that need the upstream's names), ``proxy`` (HTTP relay), ``streams`` (websocket relay),
``audit`` (one JSON line per request), ``app`` (the ASGI application).
"""
