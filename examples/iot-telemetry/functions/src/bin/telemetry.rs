//! The stream consumer: readings from `[stream.readings]` (one partition per group of
//! devices, in order per device). Each reading is validated, counted in its device's
//! one-minute window (state in kv, so a redelivered batch is not counted twice), and
//! checked against the alert threshold; a reading over it is published to the `alerts`
//! topic. Each window that closes becomes a row of `device_minutes`. Invalid and late
//! readings go to `rejected` with the reason, so nothing vanishes silently.

use iot_telemetry::{Reading, rfc3339};
use updraft_sdk::event::{self, Event, EventExt, Handler, HandlerError};
use updraft_sdk::sql::{Database, Value};
use updraft_sdk::window::{TICK_TYPE, Windows};
use updraft_sdk::{messaging, variables};

/// One minute, in milliseconds.
const MINUTE: i64 = 60_000;
/// How long after its end a minute still takes readings.
const LATENESS: i64 = 5_000;

struct Telemetry;

fn position(e: &Event) -> (i64, i64) {
    let read = |name: &str| e.extension(name).and_then(|v| v.parse().ok()).unwrap_or(-1);
    (read("partition"), read("offset"))
}

impl Handler for Telemetry {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let db = Database::open("telemetry")?;
        let threshold: f64 = variables::get("alert_celsius")
            .and_then(|v| v.parse().ok())
            .unwrap_or(40.0);
        let windows =
            Windows::tumbling("state", "device-minute", MINUTE)?.allowed_lateness(LATENESS);
        let mut rejected: Vec<Vec<Value>> = Vec::new();
        let mut readings: Vec<Option<Reading>> = Vec::with_capacity(events.len());
        for e in &events {
            if e.type_ == TICK_TYPE {
                readings.push(None);
                continue;
            }
            let (partition, offset) = position(e);
            let reject = |reason: &str, device: Option<&str>| {
                vec![
                    Value::Text(reason.to_owned()),
                    device.map_or(Value::Null, |d| Value::Text(d.to_owned())),
                    Value::Integer(partition),
                    Value::Integer(offset),
                ]
            };
            match e.json::<Reading>() {
                Err(_) => {
                    rejected.push(reject("not a reading", None));
                    readings.push(None);
                }
                Ok(r) => match r.invalid() {
                    Some(why) => {
                        rejected.push(reject(why, Some(&r.device)));
                        readings.push(None);
                    }
                    None => readings.push(Some(r)),
                },
            }
        }
        let batch = windows.on_batch(&events, |i, _| {
            let r = readings[i].as_ref()?;
            Some((r.device.clone(), r.time, r.celsius))
        })?;
        for &i in &batch.late {
            let (partition, offset) = position(&events[i]);
            let device = readings[i].as_ref().map(|r| r.device.clone());
            rejected.push(vec![
                Value::Text("late for its minute".to_owned()),
                device.map_or(Value::Null, Value::Text),
                Value::Integer(partition),
                Value::Integer(offset),
            ]);
        }
        // Alerts: published once per reading (the event id is the reading's offset, so a
        // redelivery is deduplicated by the topic).
        for (e, r) in events.iter().zip(&readings) {
            let Some(r) = r else { continue };
            if r.celsius >= threshold {
                let (partition, offset) = position(e);
                let alert = event::new("telemetry.alert")
                    .id(format!("alert-{partition}-{offset}"))
                    .subject(r.device.clone())
                    .json(&serde_json::json!({
                        "device": r.device,
                        "time": rfc3339(r.time),
                        "celsius": r.celsius,
                        "threshold": threshold,
                    }))?;
                messaging::publish("alerts", &alert)?;
            }
        }
        let minutes: Vec<Vec<Value>> = batch
            .closed
            .iter()
            .map(|w| {
                vec![
                    Value::Text(w.key.clone()),
                    Value::Text(rfc3339(w.start_ms)),
                    Value::Integer(w.aggregate.count as i64),
                    Value::Real((w.mean() * 100.0).round() / 100.0),
                    Value::Real(w.aggregate.min),
                    Value::Real(w.aggregate.max),
                ]
            })
            .collect();
        if !minutes.is_empty() {
            db.execute_many(
                "INSERT INTO device_minutes (device, minute, readings, avg_celsius, min_celsius, max_celsius)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (device, minute) DO UPDATE SET readings = excluded.readings,
                   avg_celsius = excluded.avg_celsius, min_celsius = excluded.min_celsius,
                   max_celsius = excluded.max_celsius",
                &minutes,
            )?;
        }
        if !rejected.is_empty() {
            db.execute_many(
                "INSERT INTO rejected (reason, device, partition, offset) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &rejected,
            )?;
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Telemetry);
