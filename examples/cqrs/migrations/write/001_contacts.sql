-- The write model: a contact header and its address as a child record.
CREATE TABLE contact (
    id TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL,
    version INTEGER NOT NULL
);

CREATE TABLE address (
    contact_id TEXT PRIMARY KEY REFERENCES contact (id) ON DELETE CASCADE,
    street TEXT NOT NULL,
    city TEXT NOT NULL,
    postcode TEXT NOT NULL,
    country TEXT NOT NULL
);
