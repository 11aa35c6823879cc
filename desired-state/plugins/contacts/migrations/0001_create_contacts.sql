-- Runs once in each tenant schema, with search_path already set to that schema:
-- table names are unqualified and prefixed with the plugin id.
CREATE TABLE contacts_contacts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'organisation')),
    display_name text NOT NULL,
    given_name   text,
    family_name  text,
    organisation_id uuid REFERENCES contacts_contacts (id) ON DELETE SET NULL,
    email        text,
    phone        text,
    country      char(2),
    custom_fields jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX contacts_contacts_email_key ON contacts_contacts (lower(email))
    WHERE email IS NOT NULL;
CREATE INDEX contacts_contacts_display_name_idx ON contacts_contacts (lower(display_name));
CREATE INDEX contacts_contacts_organisation_idx ON contacts_contacts (organisation_id);
