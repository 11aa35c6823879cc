"""The runtime: the provider interface that runs plugin workloads, the workload spec (env
resolved at apply time) and HTTP probes."""
