CREATE TABLE analytics_daily_rollups (
    day          date NOT NULL,
    metric       text NOT NULL CHECK (metric IN ('deals_won', 'deals_lost', 'revenue_paid')),
    currency     char(3) NOT NULL DEFAULT 'USD',
    event_count  integer NOT NULL DEFAULT 0,
    amount_total numeric(16, 2) NOT NULL DEFAULT 0,
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, metric, currency)
);

CREATE TABLE analytics_dashboards (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    owner_id   uuid,
    shared     boolean NOT NULL DEFAULT false,
    layout     jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
