"""plexica-gitops: declarative GitOps reconciler for the Plexica plugin platform."""

__version__ = "0.1.0"
