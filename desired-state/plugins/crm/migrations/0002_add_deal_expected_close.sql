ALTER TABLE crm_deals
    ADD COLUMN expected_close_date date,
    ADD COLUMN probability smallint CHECK (probability BETWEEN 0 AND 100);

CREATE INDEX crm_deals_expected_close_idx ON crm_deals (expected_close_date)
    WHERE status = 'open';
