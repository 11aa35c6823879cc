"""The GitOps half's standalone parts: webhook delivery (notify) and Prometheus metrics
(metrics), used by `drift` and `reconcile`."""
