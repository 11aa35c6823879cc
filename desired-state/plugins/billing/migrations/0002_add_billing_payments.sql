CREATE TABLE billing_payments (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invoice_id   uuid NOT NULL REFERENCES billing_invoices (id),
    amount       numeric(14, 2) NOT NULL CHECK (amount <> 0),  -- negative for refunds
    method       text NOT NULL CHECK (method IN ('manual', 'bank-transfer', 'stripe')),
    external_ref text,                                         -- e.g. a Stripe charge id
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX billing_payments_invoice_idx ON billing_payments (invoice_id);
CREATE UNIQUE INDEX billing_payments_external_ref_key ON billing_payments (method, external_ref)
    WHERE external_ref IS NOT NULL;
