-- The read model, derived from the `accounts` topic only: accounts and their entries.
-- Entries are keyed by event id, so applying an event twice (a redelivery or a replay)
-- stores it once; a balance is the sum of its entries.
CREATE TABLE account (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    opened_at TEXT NOT NULL
);

CREATE TABLE entry (
    event_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    at TEXT NOT NULL
);

CREATE INDEX entry_account ON entry (account_id);
