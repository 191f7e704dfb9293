"""The hosted-API domain: task schema, the one removal flow, errors, fetch and webhooks.

Used by the client library (``RmbgClient.remove_background``) and by the gateway (every protocol).
Depends on nothing of ours but the standard-library contract modules of ``rmbg_backend``.
"""
