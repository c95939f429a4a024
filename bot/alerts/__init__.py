"""From a failing pod to an incident: investigate and diagnose, the pipeline, and
incidents (grouping, claims, Alertmanager timing) in the store.

Knows nothing of Slack: it posts through the `Notifier` protocol.
"""
