-- Demo data with the kinds of damage the scrubber repairs.
INSERT INTO customers (name, email, country) VALUES
    ('Ada Lovelace', 'ada@example.org', 'GB'),
    ('  Grace Hopper ', ' Grace.Hopper@Example.COM ', 'us'),
    ('Alan Turing', 'not-an-email', 'GB'),
    ('Ada L.', 'ADA@example.org', 'gb'),
    (NULL, 'nameless@example.net', 'FR');

INSERT INTO orders (customer_id, amount_cents) VALUES (1, 1250), (2, 999), (42, 500);
