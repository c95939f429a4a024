"""Slack's side: the Web API client, the alert notifier, Block Kit, the one text
sink, approvers, action ids and the inbound request gate.

May use alerts/ (it renders incidents) and everything below; never chatops/.
"""
