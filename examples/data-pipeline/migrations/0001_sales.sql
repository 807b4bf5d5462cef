-- One row per order line of the sales exports; `order_id` is the key a re-sent export
-- upserts by.
CREATE TABLE sales (
    order_id   TEXT PRIMARY KEY,
    day        TEXT NOT NULL,
    region     TEXT NOT NULL,
    product    TEXT NOT NULL,
    units      INTEGER NOT NULL CHECK (units >= 0),
    unit_price REAL NOT NULL,
    total      REAL NOT NULL,
    paid       INTEGER
);
CREATE INDEX sales_by_day ON sales (day);
CREATE INDEX sales_by_region ON sales (region);
