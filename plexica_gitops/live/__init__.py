"""Live state: its model, the fast JSON codec of snapshots, and observe (store + runtime +
broker put together)."""
