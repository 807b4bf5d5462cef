-- The same table on PostgreSQL (used when runtime.toml puts [sql.items] there): the
-- functions' SQL is the same on both; only this DDL differs.
CREATE TABLE items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    note text NOT NULL DEFAULT '',
    created text NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
);
