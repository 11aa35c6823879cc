"""The platform store on PostgreSQL: the catalog of spec 004 §7, per-tenant migration
history, and the reconciler's own lock, apply history, step journal and last-applied
fingerprints. Connection from PLEXICA_DATABASE_URL (or --database-url), never from YAML."""
