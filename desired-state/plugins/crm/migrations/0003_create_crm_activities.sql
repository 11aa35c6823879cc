CREATE TABLE crm_activities (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    deal_id     uuid NOT NULL REFERENCES crm_deals (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('call', 'email', 'meeting', 'note', 'task')),
    subject     text NOT NULL,
    body        text,
    due_at      timestamptz,
    done_at     timestamptz,
    author_id   uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX crm_activities_deal_idx ON crm_activities (deal_id, created_at DESC);
