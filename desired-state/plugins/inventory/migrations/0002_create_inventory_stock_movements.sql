CREATE TABLE inventory_stock_movements (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id     uuid NOT NULL REFERENCES inventory_items (id) ON DELETE CASCADE,
    location_id uuid NOT NULL REFERENCES inventory_locations (id),
    quantity    numeric(12, 3) NOT NULL CHECK (quantity <> 0),   -- negative = outbound
    reason      text NOT NULL CHECK (reason IN ('receipt', 'shipment', 'correction', 'transfer')),
    reference   text,
    moved_by    uuid,
    moved_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX inventory_stock_movements_item_idx ON inventory_stock_movements (item_id, moved_at DESC);
