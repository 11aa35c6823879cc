"""Versioned DDL of the store. `init` applies the versions a database lacks, in order, each
in its own transaction, and records them in plexica_gitops.schema_version. Never edit a
released version: add the next one."""

from __future__ import annotations

CATALOG_SCHEMA = "plexica"  # the platform's tables (spec 004 §7 and the service registry)
RECONCILER_SCHEMA = "plexica_gitops"  # the reconciler's own bookkeeping

DDL_VERSIONS: list[tuple[int, str, str]] = [
    (
        1,
        "catalog, migration history, apply history, journal, last-applied",
        """
CREATE SCHEMA IF NOT EXISTS plexica;
CREATE SCHEMA IF NOT EXISTS plexica_gitops;

CREATE TABLE plexica.plugins (
    id            varchar(63) PRIMARY KEY,
    name          varchar(200) NOT NULL,
    version       varchar(100) NOT NULL,
    manifest      jsonb NOT NULL,
    manifest_hash varchar(64) NOT NULL,
    status        varchar(16) NOT NULL CHECK (status IN ('REGISTERED', 'INSTALLING',
                  'INSTALLED', 'ACTIVE', 'DISABLED', 'UNINSTALLING', 'UNINSTALLED')),
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plexica.tenants (
    id          uuid PRIMARY KEY,
    slug        varchar(63) NOT NULL UNIQUE,
    schema_name varchar(63) NOT NULL UNIQUE,
    status      varchar(16) NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plexica.tenant_plugins (
    tenant_id     uuid NOT NULL REFERENCES plexica.tenants (id),
    plugin_id     varchar(63) NOT NULL REFERENCES plexica.plugins (id),
    enabled       boolean NOT NULL,
    configuration jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plugin_id)
);

CREATE TABLE plexica.permissions (
    key         varchar(200) PRIMARY KEY,
    plugin_id   varchar(63) NOT NULL REFERENCES plexica.plugins (id),
    name        varchar(200) NOT NULL,
    description text NOT NULL DEFAULT ''
);
CREATE INDEX permissions_plugin ON plexica.permissions (plugin_id);

-- The service registry: the gateway routes /api/plugins/{id}/ and the front end loads the
-- remote entry; endpoints are the ready replicas traffic may go to.
CREATE TABLE plexica.routes (
    plugin_id       varchar(63) PRIMARY KEY REFERENCES plexica.plugins (id),
    backend_prefix  varchar(200) NOT NULL,
    frontend_prefix varchar(200),
    remote_entry    varchar(2000),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE plexica.route_endpoints (
    plugin_id     varchar(63) NOT NULL REFERENCES plexica.routes (plugin_id) ON DELETE CASCADE,
    endpoint      varchar(2000) NOT NULL,
    instance      varchar(200) NOT NULL,
    version       varchar(100) NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plugin_id, endpoint)
);

CREATE TABLE plexica.tenant_migrations (
    tenant_id   uuid NOT NULL REFERENCES plexica.tenants (id),
    plugin_id   varchar(63) NOT NULL,
    version     integer NOT NULL,
    name        varchar(200) NOT NULL,
    checksum    char(64) NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL,
    PRIMARY KEY (tenant_id, plugin_id, version)
);

CREATE TABLE plexica_gitops.schema_version (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plexica_gitops.applies (
    id               bigserial PRIMARY KEY,
    desired_revision varchar(100) NOT NULL,
    plan_hash        varchar(100) NOT NULL,
    host             varchar(255) NOT NULL,
    pid              integer NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    result           varchar(16) NOT NULL DEFAULT 'running'
                     CHECK (result IN ('running', 'succeeded', 'failed', 'interrupted')),
    counts           jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE plexica_gitops.journal (
    apply_id    bigint NOT NULL REFERENCES plexica_gitops.applies (id),
    step_id     varchar(400) NOT NULL,
    status      varchar(16) NOT NULL
                CHECK (status IN ('started', 'succeeded', 'failed', 'skipped', 'rolled-back')),
    detail      text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (apply_id, step_id)
);

CREATE TABLE plexica_gitops.last_applied (
    address     varchar(400) PRIMARY KEY,
    fingerprint varchar(64) NOT NULL,
    apply_id    bigint REFERENCES plexica_gitops.applies (id),
    applied_at  timestamptz NOT NULL DEFAULT now()
);
""",
    ),
    (
        2,
        "event topics owned by the reconciler, plugin subscriptions, bindings by plugin",
        """
-- The topics plexica-gitops created, and for which plugin: only these are ever changed or
-- deleted by it (a topic created by hand or by another tool is left alone).
CREATE TABLE plexica_gitops.topics (
    name               varchar(249) PRIMARY KEY,
    plugin_id          varchar(63) NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Where the platform wires each subscriber's consumer: one consumer group per plugin.
CREATE TABLE plexica.event_subscriptions (
    plugin_id      varchar(63) NOT NULL REFERENCES plexica.plugins (id),
    topic          varchar(249) NOT NULL,
    consumer_group varchar(255) NOT NULL,
    PRIMARY KEY (plugin_id, topic)
);

-- Disabling a plugin everywhere, and finding its tenants, without a scan of every binding.
CREATE INDEX tenant_plugins_plugin ON plexica.tenant_plugins (plugin_id);
""",
    ),
    (
        3,
        "the runtime provider and settings of the last apply",
        """
-- platform.yaml's spec.runtime as the last apply used it (one row): `status` observes the
-- workloads through it from anywhere, without the desired-state checkout.
CREATE TABLE plexica_gitops.runtime (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    provider    varchar(100) NOT NULL,
    settings    jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
""",
    ),
    (
        4,
        "apply lease and fencing of apply writes, key of the env-value digests",
        """
-- The apply lease (store/lock.py): one row, the apply allowed to drive the platform. The
-- holder of the advisory lock takes it (epoch + 1) once the previous holder's lease ran
-- out, and renews it every second on the lock's own session; `epoch` is the fencing token
-- every write of that apply carries (the session setting plexica_gitops.epoch).
CREATE TABLE plexica_gitops.apply_lease (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch        bigint NOT NULL DEFAULT 0,
    host         varchar(255),
    pid          integer,
    apply_id     bigint,
    acquired_at  timestamptz,
    heartbeat_at timestamptz,
    lease_until  timestamptz
);
INSERT INTO plexica_gitops.apply_lease DEFAULT VALUES;

ALTER TABLE plexica_gitops.applies ADD COLUMN epoch bigint;

-- A session that carries an epoch (an apply's) may write only while that epoch holds an
-- unexpired lease. FOR KEY SHARE: a takeover (SELECT ... FOR UPDATE of the lease) waits
-- for the writes in flight, and every later write of the old holder fails. Sessions
-- without an epoch (the platform's own writers) are not fenced.
CREATE FUNCTION plexica_gitops.check_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    token text := current_setting('plexica_gitops.epoch', true);
    holder bigint;
    valid boolean;
BEGIN
    IF token IS NULL OR token = '' THEN
        RETURN NULL;
    END IF;
    SELECT epoch, lease_until > clock_timestamp() INTO holder, valid
      FROM plexica_gitops.apply_lease FOR KEY SHARE;
    IF holder IS DISTINCT FROM token::bigint OR NOT coalesce(valid, false) THEN
        RAISE EXCEPTION 'fenced: the apply with lease epoch % no longer holds the apply lease '
                        '(the lease is at epoch %)', token, holder
              USING ERRCODE = 'PX001',
                    HINT = 'this apply lost the apply lock; nothing it writes from now on is kept';
    END IF;
    RETURN NULL;
END
$$;

-- On every table of both schemas there is now (a table a later version adds gets its own
-- trigger there): whatever apply writes is fenced; the lease and the key are not.
DO $$
DECLARE
    target regclass;
BEGIN
    FOR target IN
        SELECT c.oid::regclass FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('plexica', 'plexica_gitops') AND c.relkind = 'r'
           AND c.relname NOT IN ('schema_version', 'apply_lease')
         ORDER BY 1
    LOOP
        EXECUTE format('CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON %s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION plexica_gitops.check_fence()',
                       target);
    END LOOP;
END
$$;

-- The key of the HMAC-SHA256 digest of each workload's resolved env values, labelled on
-- its replicas so a changed secret is seen (workload.py). Random (two v4 UUIDs: 244 bits
-- from the server's strong random source), made once here; only the role that owns the
-- store reads it: never grant it to the platform's roles.
CREATE TABLE plexica_gitops.env_digest_key (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key        bytea NOT NULL CHECK (length(key) >= 16),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON plexica_gitops.env_digest_key FROM PUBLIC;
INSERT INTO plexica_gitops.env_digest_key (key)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
""",
    ),
    (
        5,
        "git revisions: longer desired revisions, the revision of each last-applied entry",
        """
-- A git revision is recorded as "<ref>@sha1:<40 hex>" (source/tree.py): a ref may be long.
ALTER TABLE plexica_gitops.applies ALTER COLUMN desired_revision TYPE varchar(1000);

-- The revision each last-applied fingerprint came from (its apply's desired revision), so
-- drift can say what was last applied without the apply record; filled for older rows.
ALTER TABLE plexica_gitops.last_applied ADD COLUMN revision varchar(1000);
UPDATE plexica_gitops.last_applied l SET revision = a.desired_revision
  FROM plexica_gitops.applies a WHERE a.id = l.apply_id;
""",
    ),
]
