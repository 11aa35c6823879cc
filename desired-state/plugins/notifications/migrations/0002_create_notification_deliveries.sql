CREATE TABLE notifications_deliveries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    template_code text NOT NULL,
    channel       text NOT NULL,
    recipient     text NOT NULL,
    source_event  uuid,                       -- id of the event that triggered it
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'sent', 'failed', 'suppressed')),
    attempts      smallint NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);

CREATE INDEX notifications_deliveries_status_idx ON notifications_deliveries (status, created_at)
    WHERE status IN ('queued', 'failed');
CREATE UNIQUE INDEX notifications_deliveries_dedup_key
    ON notifications_deliveries (source_event, template_code, channel, recipient)
    WHERE source_event IS NOT NULL;
