"""Operate the served repository: Prometheus config and alert rules, a Grafana dashboard, Kubernetes and KServe
manifests, all generated from models.toml into deploy/ (`make deploy`), and a local Prometheus (`make monitor`).

Code lives here; deploy/ holds only what `python -m operate generate` writes.
"""
