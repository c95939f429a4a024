"""The registry's side: the OCI distribution client, Docker Hub quota, pull
secrets as credentials and the investigator that asks what would work.

The client is split by job, each module importing only those before it:
model (credentials, settings, Probe/Outcome) → transport (pooled connections, TLS per host,
timeouts, transport failures) → auth (WWW-Authenticate, Basic, Bearer tokens and their cache)
→ cache (answers reused for a short while) → client (RegistryClient: the `/v2/` operations).
dockerhub, pullsecrets and investigator sit on top of them.

May use kube/ (pull secrets are read from the API), diagnosis/ and config (the bot's settings
become a client in `client.client_from_settings`).
"""
