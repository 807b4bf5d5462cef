//! Windows over a stream, per key, with their state in kv: "average temperature per device
//! per minute" in a few lines.
//!
//! ```ignore
//! use updraft_sdk::window::Windows;
//!
//! let windows = Windows::tumbling("state", "per-minute", 60_000)?.allowed_lateness(10_000);
//! let done = windows.on_batch(&events, |_, e| {
//!     let r: Reading = serde_json::from_slice(&e.data).ok()?;
//!     Some((r.device, r.time_ms, r.celsius))
//! })?;
//! for w in done.closed { /* write w.key, w.start_ms, w.mean() to sql */ }
//! for i in done.late { /* route events[i] somewhere */ }
//! ```
//!
//! A window is `[start, start + size)` in event time (milliseconds). It closes once the
//! partition's event time has passed its end plus the allowed lateness, or, on a quiet
//! partition, when the stream's `updraft.stream.tick` says the wall clock has. An event for
//! a window that already closed is *late*: not counted, and handed back so the function can
//! route it. Each key's state is one kv value that records the last offset it counted and
//! is written with compare-and-swap, so a batch delivered again after a crash is not
//! counted twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventExt};
use crate::kv::Store;
use crate::{Error, Result};

/// The event type of a stream's idle tick.
pub const TICK_TYPE: &str = "updraft.stream.tick";
/// Tries of a compare-and-swap before giving up (another instance kept changing the key).
const CAS_TRIES: usize = 20;

/// The aggregate of one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Values counted.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Aggregate {
    fn of(value: f64) -> Self {
        Self {
            count: 1,
            sum: value,
            min: value,
            max: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// A window that closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// The key (a device id).
    pub key: String,
    /// Its start, in milliseconds since the epoch.
    pub start_ms: i64,
    /// Its end (exclusive).
    pub end_ms: i64,
    /// What it counted.
    pub aggregate: Aggregate,
}

impl Closed {
    /// The mean of what it counted.
    pub fn mean(&self) -> f64 {
        self.aggregate.mean()
    }
}

/// What one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Counted in its window(s).
    Counted,
    /// Counted before (a redelivery): skipped.
    Duplicate,
    /// Its window had closed: not counted.
    Late,
}

/// One key's state: its open windows, what it counted last, and up to when it is closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    /// The offset of the last event counted.
    pub last_offset: Option<u64>,
    /// Windows starting before this are closed.
    pub closed_until_ms: i64,
    /// Open windows by start.
    pub open: BTreeMap<i64, Aggregate>,
}

/// Window sizes, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// How long a window is.
    pub size_ms: i64,
    /// How far apart windows start (equal to `size_ms` for tumbling windows).
    pub slide_ms: i64,
    /// How long after its end a window still takes events.
    pub lateness_ms: i64,
}

impl Shape {
    /// Starts of the windows containing `time_ms`, oldest first.
    fn starts(&self, time_ms: i64) -> Vec<i64> {
        let last = time_ms.div_euclid(self.slide_ms) * self.slide_ms;
        let mut starts = Vec::new();
        let mut start = last;
        while start > time_ms - self.size_ms {
            starts.push(start);
            start -= self.slide_ms;
        }
        starts.reverse();
        starts
    }
}

impl KeyState {
    /// Counts `value` at `time_ms` from the record at `offset`.
    pub fn add(&mut self, shape: &Shape, offset: u64, time_ms: i64, value: f64) -> Added {
        if self.last_offset.is_some_and(|last| offset <= last) {
            return Added::Duplicate;
        }
        self.last_offset = Some(offset);
        let starts: Vec<i64> = shape
            .starts(time_ms)
            .into_iter()
            .filter(|s| *s >= self.closed_until_ms)
            .collect();
        if starts.is_empty() {
            return Added::Late;
        }
        for start in starts {
            self.open
                .entry(start)
                .and_modify(|a| a.add(value))
                .or_insert_with(|| Aggregate::of(value));
        }
        Added::Counted
    }

    /// Closes the windows whose end plus lateness is at or before `watermark_ms`.
    pub fn close(&mut self, shape: &Shape, key: &str, watermark_ms: i64) -> Vec<Closed> {
        let due: Vec<i64> = self
            .open
            .keys()
            .copied()
            .filter(|start| start + shape.size_ms + shape.lateness_ms <= watermark_ms)
            .collect();
        let mut closed = Vec::new();
        for start in due {
            if let Some(aggregate) = self.open.remove(&start) {
                self.closed_until_ms = self.closed_until_ms.max(start + shape.slide_ms);
                closed.push(Closed {
                    key: key.to_owned(),
                    start_ms: start,
                    end_ms: start + shape.size_ms,
                    aggregate,
                });
            }
        }
        closed
    }
}

/// What a batch did to the windows.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Windows that closed, oldest first per key.
    pub closed: Vec<Closed>,
    /// Indexes of events that came too late for their window.
    pub late: Vec<usize>,
    /// Events counted before (redelivered after a crash).
    pub duplicates: usize,
}

/// Windows of one kind over a stream, their state in a kv store.
pub struct Windows {
    store: Store,
    name: String,
    shape: Shape,
}

fn err(m: impl Into<String>) -> Error {
    Error(m.into())
}

impl Windows {
    /// Back-to-back windows of `size_ms`, state in kv store `kv` under `name`.
    pub fn tumbling(kv: &str, name: &str, size_ms: i64) -> Result<Self> {
        Self::sliding(kv, name, size_ms, size_ms)
    }

    /// Windows of `size_ms` starting every `slide_ms`.
    pub fn sliding(kv: &str, name: &str, size_ms: i64, slide_ms: i64) -> Result<Self> {
        if size_ms <= 0 || slide_ms <= 0 || slide_ms > size_ms {
            return Err(err(format!(
                "window `{name}`: size {size_ms} ms and slide {slide_ms} ms must be positive, with the slide at most the size"
            )));
        }
        Ok(Self {
            store: Store::open(kv)?,
            name: name.to_owned(),
            shape: Shape {
                size_ms,
                slide_ms,
                lateness_ms: 0,
            },
        })
    }

    /// Lets a window take events up to `lateness_ms` after its end.
    pub fn allowed_lateness(mut self, lateness_ms: i64) -> Self {
        self.shape.lateness_ms = lateness_ms.max(0);
        self
    }

    fn prefix(&self, partition: u32) -> String {
        format!("window/{}/{partition}/", self.name)
    }

    /// Applies `change` to `key`'s state in `partition` with compare-and-swap.
    fn update<R>(
        &self,
        partition: u32,
        key: &str,
        mut change: impl FnMut(&mut KeyState) -> R,
    ) -> Result<R> {
        let kv_key = format!("{}{key}", self.prefix(partition));
        for _ in 0..CAS_TRIES {
            let old = self.store.get(&kv_key)?;
            let mut state: KeyState = match &old {
                Some(bytes) => serde_json::from_slice(bytes)
                    .map_err(|e| err(format!("window state `{kv_key}` is not readable: {e}")))?,
                None => KeyState::default(),
            };
            let result = change(&mut state);
            let new = serde_json::to_vec(&state).map_err(|e| err(e.to_string()))?;
            if old.as_deref() == Some(new.as_slice())
                || self.store.compare_and_swap(&kv_key, old.as_deref(), &new)?
            {
                return Ok(result);
            }
        }
        Err(err(format!(
            "window state `{kv_key}` kept changing under this function; try again"
        )))
    }

    /// Counts `value` at `time_ms` for `key`, from stream event `event` (its `partition` and
    /// `offset`).
    pub fn add(&self, event: &Event, key: &str, time_ms: i64, value: f64) -> Result<Added> {
        let (partition, offset) = position(event)?;
        self.update(partition, key, |s| {
            s.add(&self.shape, offset, time_ms, value)
        })
    }

    /// Closes every window of `partition` due by `watermark_ms` (event time, or the wall
    /// clock on a tick).
    pub fn close(&self, partition: u32, watermark_ms: i64) -> Result<Vec<Closed>> {
        let prefix = self.prefix(partition);
        let mut closed = Vec::new();
        for kv_key in self.store.keys_with_prefix(&prefix)? {
            let key = kv_key.trim_start_matches(&prefix).to_owned();
            closed.extend(self.update(partition, &key, |s| {
                s.close(&self.shape, &key, watermark_ms)
            })?);
        }
        Ok(closed)
    }

    /// Handles a batch from a stream trigger: counts each event `read` (given its index and
    /// the event) gives a `(key, time_ms, value)` for, then closes what the batch's event time (or a tick's
    /// clock) makes due. Events `read` returns `None` for are skipped.
    pub fn on_batch(
        &self,
        events: &[Event],
        read: impl Fn(usize, &Event) -> Option<(String, i64, f64)>,
    ) -> Result<Batch> {
        let mut batch = Batch::default();
        let mut watermarks: BTreeMap<u32, i64> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            if e.type_ == TICK_TYPE {
                let (partition, now_ms) = tick(e)?;
                let w = watermarks.entry(partition).or_insert(now_ms);
                *w = (*w).max(now_ms);
                continue;
            }
            let Some((key, time_ms, value)) = read(i, e) else {
                continue;
            };
            let (partition, _) = position(e)?;
            match self.add(e, &key, time_ms, value)? {
                Added::Counted => {}
                Added::Duplicate => batch.duplicates += 1,
                Added::Late => batch.late.push(i),
            }
            let w = watermarks.entry(partition).or_insert(time_ms);
            *w = (*w).max(time_ms);
        }
        for (partition, watermark) in watermarks {
            batch.closed.extend(self.close(partition, watermark)?);
        }
        Ok(batch)
    }
}

/// A stream event's `partition` and `offset`.
fn position(e: &Event) -> Result<(u32, u64)> {
    let read =
        |name: &str| {
            e.extension(name).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| {
            err(format!(
                "event `{}` has no `{name}`; windows take events from a `[[trigger.stream]]`",
                e.id
            ))
        })
        };
    Ok((
        u32::try_from(read("partition")?).map_err(|e| err(e.to_string()))?,
        read("offset")?,
    ))
}

/// A tick's partition and clock, in milliseconds.
fn tick(e: &Event) -> Result<(u32, i64)> {
    let partition = e
        .extension("partition")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| err("a tick without its `partition`"))?;
    let data: serde_json::Value =
        serde_json::from_slice(&e.data).map_err(|e| err(format!("a tick's data: {e}")))?;
    let now_us = data["now_us"]
        .as_i64()
        .ok_or_else(|| err("a tick without `now_us`"))?;
    Ok((partition, now_us / 1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn tumbling(lateness_ms: i64) -> Shape {
        Shape {
            size_ms: MINUTE,
            slide_ms: MINUTE,
            lateness_ms,
        }
    }

    #[test]
    fn tumbling_windows_count_close_and_skip_redeliveries() {
        let shape = tumbling(10_000);
        let mut s = KeyState::default();
        assert_eq!(s.add(&shape, 0, 1_000, 20.0), Added::Counted);
        assert_eq!(s.add(&shape, 1, 59_999, 22.0), Added::Counted);
        assert_eq!(
            s.add(&shape, 1, 59_999, 22.0),
            Added::Duplicate,
            "a redelivery"
        );
        assert_eq!(s.add(&shape, 2, 61_000, 30.0), Added::Counted);
        // Not due until the end plus the lateness.
        assert!(s.close(&shape, "d", 65_000).is_empty());
        assert_eq!(
            s.add(&shape, 3, 30_000, 24.0),
            Added::Counted,
            "late, within lateness"
        );
        let closed = s.close(&shape, "d", 70_000);
        assert_eq!(closed.len(), 1);
        let w = &closed[0];
        assert_eq!((w.start_ms, w.end_ms, w.aggregate.count), (0, MINUTE, 3));
        assert!((w.mean() - 22.0).abs() < 1e-9);
        assert_eq!((w.aggregate.min, w.aggregate.max), (20.0, 24.0));
        assert_eq!(
            s.add(&shape, 4, 5_000, 99.0),
            Added::Late,
            "its window closed"
        );
        assert_eq!(s.open.len(), 1, "the second minute stays open");
    }

    #[test]
    fn sliding_windows_count_each_event_in_every_window_it_falls_in() {
        let shape = Shape {
            size_ms: MINUTE,
            slide_ms: 20_000,
            lateness_ms: 0,
        };
        assert_eq!(shape.starts(45_000), [0, 20_000, 40_000]);
        assert_eq!(shape.starts(-1), [-60_000, -40_000, -20_000]);
        let mut s = KeyState::default();
        s.add(&shape, 0, 45_000, 1.0);
        s.add(&shape, 1, 65_000, 1.0);
        let closed = s.close(&shape, "d", 80_000);
        assert_eq!(
            closed
                .iter()
                .map(|c| (c.start_ms, c.aggregate.count))
                .collect::<Vec<_>>(),
            [(0, 1), (20_000, 2)]
        );
        assert_eq!(s.closed_until_ms, 40_000);
    }
}
