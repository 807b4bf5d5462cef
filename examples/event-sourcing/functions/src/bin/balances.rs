//! Projects account events into the `views` read model. Every write is keyed by the event id,
//! so redeliveries and replays are harmless.

use event_sourcing::{DEPOSITED, Movement, OPENED, Opened, WITHDRAWN};
use updraft_sdk::event::{self, Event, EventExt, Handler, HandlerError};
use updraft_sdk::{params, sql};

struct Balances;

impl Handler for Balances {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let db = sql::Database::open("views")?;
        for e in &events {
            let at = e.time.clone().unwrap_or_default();
            match e.type_.as_str() {
                OPENED => {
                    let o: Opened = e.json()?;
                    db.execute(
                        "INSERT INTO account (id, owner, opened_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                        params![o.account.as_str(), o.owner.as_str(), at.as_str()],
                    )?;
                }
                DEPOSITED | WITHDRAWN => {
                    let m: Movement = e.json()?;
                    let delta = if e.type_ == WITHDRAWN {
                        -m.amount
                    } else {
                        m.amount
                    };
                    db.execute(
                        "INSERT INTO entry (event_id, account_id, kind, amount, at) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (event_id) DO NOTHING",
                        params![e.id.as_str(), m.account.as_str(), e.type_.as_str(), delta, at.as_str()],
                    )?;
                }
                other => return Err(event::fail(format!("unknown account event `{other}`"))),
            }
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Balances);
