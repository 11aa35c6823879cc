CREATE TABLE notifications_templates (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code       text NOT NULL,                 -- e.g. welcome, contact-follow-up
    channel    text NOT NULL CHECK (channel IN ('email', 'in-app', 'slack')),
    locale     text NOT NULL DEFAULT 'en',
    subject    text,
    body       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, channel, locale)
);

INSERT INTO notifications_templates (code, channel, locale, subject, body) VALUES
    ('welcome', 'email', 'en', 'Welcome to {{tenant.displayName}}',
     'Hello {{user.name}}, your account is ready.'),
    ('contact-follow-up', 'in-app', 'en', NULL,
     'New contact {{contact.displayName}} was added. Follow up?');
