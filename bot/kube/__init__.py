"""The Kubernetes API: every call the bot makes, the event watch and pod sweep,
and remediation PATCHes.

May use diagnosis/ (facts it fills) and the store.
"""
