-- One row per device per minute, written when the minute's window closes.
CREATE TABLE device_minutes (
    device TEXT NOT NULL,
    minute TEXT NOT NULL,          -- RFC 3339, the window's start (UTC)
    readings INTEGER NOT NULL,
    avg_celsius REAL NOT NULL,
    min_celsius REAL NOT NULL,
    max_celsius REAL NOT NULL,
    PRIMARY KEY (device, minute)
);
CREATE INDEX device_minutes_by_minute ON device_minutes (minute);

-- Readings over the alert threshold, as the alert topic's subscriber logged them.
CREATE TABLE alerts (
    event_id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    time TEXT NOT NULL,
    celsius REAL NOT NULL
);

-- Readings that were not counted, and why (invalid, or too late for their window).
CREATE TABLE rejected (
    reason TEXT NOT NULL,
    device TEXT,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (partition, offset)
);
