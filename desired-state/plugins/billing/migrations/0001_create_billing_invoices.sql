CREATE TABLE billing_invoices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number       text NOT NULL UNIQUE,
    contact_id   uuid NOT NULL,          -- contacts_contacts.id (no cross-plugin FK)
    deal_id      uuid,                   -- crm_deals.id, when drafted from a won deal
    currency     char(3) NOT NULL,
    status       text NOT NULL DEFAULT 'draft'
                 CHECK (status IN ('draft', 'issued', 'paid', 'overdue', 'void')),
    issued_on    date,
    due_on       date,
    subtotal     numeric(14, 2) NOT NULL DEFAULT 0,
    tax          numeric(14, 2) NOT NULL DEFAULT 0,
    total        numeric(14, 2) GENERATED ALWAYS AS (subtotal + tax) STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (due_on IS NULL OR issued_on IS NULL OR due_on >= issued_on)
);

CREATE INDEX billing_invoices_contact_idx ON billing_invoices (contact_id);
CREATE INDEX billing_invoices_due_idx ON billing_invoices (due_on) WHERE status = 'issued';
CREATE UNIQUE INDEX billing_invoices_deal_key ON billing_invoices (deal_id)
    WHERE deal_id IS NOT NULL AND status <> 'void';

CREATE TABLE billing_invoice_lines (
    invoice_id  uuid NOT NULL REFERENCES billing_invoices (id) ON DELETE CASCADE,
    position    smallint NOT NULL CHECK (position > 0),
    description text NOT NULL,
    quantity    numeric(12, 3) NOT NULL DEFAULT 1 CHECK (quantity > 0),
    unit_price  numeric(14, 2) NOT NULL,
    PRIMARY KEY (invoice_id, position)
);
