//! Flags large withdrawals (over the `large_withdrawal` variable, in cents) in the `alerts`
//! kv store as `large/<event id>`.

use event_sourcing::Movement;
use updraft_sdk::event::{Event, EventExt, Handler, HandlerError};
use updraft_sdk::{kv, variables};

struct Alerts;

impl Handler for Alerts {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let limit: i64 = variables::get("large_withdrawal")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let store = kv::Store::open("alerts")?;
        for e in &events {
            let m: Movement = e.json()?;
            if m.amount > limit {
                store.set_json(&format!("large/{}", e.id), &m)?;
                println!("large withdrawal of {} from {}", m.amount, m.account);
            }
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Alerts);
