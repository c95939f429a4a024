"""What people do from Slack: `/imagepull` sub-commands, alert buttons, approvals.

Services behind the thin Bolt listeners in `handlers/`; they use slack/ to
write, alerts/ to read incidents, registry/ and kube/ to act.
"""
