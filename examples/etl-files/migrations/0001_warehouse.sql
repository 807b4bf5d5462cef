-- Lookup tables the transform step enriches with, and the table the load step fills.
CREATE TABLE rates (currency TEXT PRIMARY KEY, eur REAL NOT NULL);
INSERT INTO rates VALUES ('EUR', 1.0), ('USD', 0.95), ('GBP', 1.18), ('CHF', 1.07);

CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);
INSERT INTO customers VALUES
    ('C-1', 'Ada Ltd', 'north'),
    ('C-2', 'Grace GmbH', 'south'),
    ('C-3', 'Edsger BV', 'west');

CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY,
    day        TEXT NOT NULL,
    customer   TEXT NOT NULL,
    region     TEXT,
    amount_eur REAL NOT NULL,
    source     TEXT NOT NULL
);
