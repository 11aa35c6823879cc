"""Live state: its model and the fast JSON codec of snapshots. Observing it (store +
runtime + broker put together) is `plexica_gitops.observe`, a stage above the adapters."""
