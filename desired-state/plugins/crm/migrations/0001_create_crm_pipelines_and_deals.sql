CREATE TABLE crm_pipelines (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE,
    stages     text[] NOT NULL CHECK (cardinality(stages) >= 2),
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX crm_pipelines_one_default ON crm_pipelines (is_default) WHERE is_default;

-- contact_id points at contacts_contacts.id. There is deliberately no foreign key
-- across plugins: each plugin's tables can then be migrated and purged on their own.
CREATE TABLE crm_deals (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pipeline_id uuid NOT NULL REFERENCES crm_pipelines (id),
    stage       text NOT NULL,
    title       text NOT NULL,
    contact_id  uuid,
    amount      numeric(14, 2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    currency    char(3) NOT NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'won', 'lost')),
    lost_reason text,
    owner_id    uuid,
    closed_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX crm_deals_pipeline_stage_idx ON crm_deals (pipeline_id, stage);
CREATE INDEX crm_deals_contact_idx ON crm_deals (contact_id);
CREATE INDEX crm_deals_open_idx ON crm_deals (updated_at) WHERE status = 'open';
