//! Subscribes to the `alerts` topic and logs each alert into the `alerts` table (where a
//! real deployment would page someone).

use updraft_sdk::event::{Event, EventExt, Handler, HandlerError};
use updraft_sdk::sql::{Database, Value};

struct AlertLog;

impl Handler for AlertLog {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let db = Database::open("telemetry")?;
        for e in &events {
            let alert: serde_json::Value = e.json()?;
            db.execute(
                "INSERT INTO alerts (event_id, device, time, celsius) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[
                    Value::Text(e.id.clone()),
                    Value::Text(alert["device"].as_str().unwrap_or_default().to_owned()),
                    Value::Text(alert["time"].as_str().unwrap_or_default().to_owned()),
                    Value::Real(alert["celsius"].as_f64().unwrap_or_default()),
                ],
            )?;
            println!("alert: {} at {} °C", alert["device"], alert["celsius"]);
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(AlertLog);
