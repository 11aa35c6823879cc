CREATE TABLE inventory_locations (
    id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code text NOT NULL UNIQUE,
    name text NOT NULL
);

CREATE TABLE inventory_items (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    unit        text NOT NULL DEFAULT 'each',
    supplier_id uuid,                         -- contacts_contacts.id (no cross-plugin FK)
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inventory_stock_levels (
    item_id     uuid NOT NULL REFERENCES inventory_items (id) ON DELETE CASCADE,
    location_id uuid NOT NULL REFERENCES inventory_locations (id),
    on_hand     numeric(12, 3) NOT NULL DEFAULT 0,
    PRIMARY KEY (item_id, location_id)
);
