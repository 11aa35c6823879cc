-- Raw facts consumed from crm.* and billing.* topics; event_id makes redelivery
-- (at-least-once) harmless.
CREATE TABLE analytics_events (
    event_id    uuid PRIMARY KEY,
    topic       text NOT NULL,
    occurred_at timestamptz NOT NULL,
    amount      numeric(14, 2),
    currency    char(3),
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX analytics_events_topic_time_idx ON analytics_events (topic, occurred_at);
