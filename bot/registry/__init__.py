"""The registry's side: the OCI distribution client, Docker Hub quota, pull
secrets as credentials and the investigator that asks what would work.

May use kube/ (pull secrets are read from the API) and diagnosis/.
"""
