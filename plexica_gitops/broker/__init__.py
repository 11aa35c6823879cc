"""The event broker (Kafka protocol): topics observed, created, changed and deleted."""
