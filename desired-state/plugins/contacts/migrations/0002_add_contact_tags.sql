CREATE TABLE contacts_tags (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    color      char(7) NOT NULL DEFAULT '#6b7280' CHECK (color ~ '^#[0-9a-f]{6}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX contacts_tags_name_key ON contacts_tags (lower(name));

CREATE TABLE contacts_contact_tags (
    contact_id uuid NOT NULL REFERENCES contacts_contacts (id) ON DELETE CASCADE,
    tag_id     uuid NOT NULL REFERENCES contacts_tags (id) ON DELETE CASCADE,
    tagged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, tag_id)
);

CREATE INDEX contacts_contact_tags_tag_idx ON contacts_contact_tags (tag_id);
