-- Where the scrubber moves rows it cannot repair, with the reason, so nothing is lost.
CREATE TABLE IF NOT EXISTS quarantine (
    source_table TEXT NOT NULL,
    source_id INTEGER NOT NULL,
    row_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
);
