"""Who may read what: patient consent, the access trail, and the check of one against the other.

Knows the ledger (consent statements, patient keys and access events are ledger entries), not
HTTP or MQTT. The error tree of the consent and trail modules is drawn in access/errors.py.
"""
