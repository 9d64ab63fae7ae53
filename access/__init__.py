"""Who may read what: token checks, roles and SMART scopes, patient consent, the access trail.

Knows the ledger, not HTTP or MQTT: the web layer hands it a bearer token and gets back a
typed ``Principal`` or one ``TokenError`` with a reason code it turns into a 401.
"""
