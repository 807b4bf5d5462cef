-- The read model: one flattened row per contact, shaped the way the API returns it.
-- `version` makes the projection idempotent: an older or repeated event changes nothing.
CREATE TABLE contact_view (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    street TEXT NOT NULL,
    city TEXT NOT NULL,
    postcode TEXT NOT NULL,
    country TEXT NOT NULL,
    mailing_label TEXT NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX contact_view_city ON contact_view (city);
