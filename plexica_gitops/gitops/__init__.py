"""The GitOps half's adapters: webhook delivery (notify) and Prometheus metrics (metrics),
used by `service.drift` and by the reconcile loop (plexica_gitops/reconcile.py). They
import nothing of service, apply or plan."""
