//! The read side's writer: turns `contact.*` events into flattened `contact_view` rows in the
//! `directory` database. Idempotent and order-tolerant: a row only moves forward in version,
//! so redelivered or late events change nothing.

use cqrs::ContactChanged;
use updraft_sdk::event::{self, Event, EventExt, Handler, HandlerError};
use updraft_sdk::{params, sql};

struct Projector;

impl Handler for Projector {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let db = sql::Database::open("directory")?;
        for e in &events {
            let change: ContactChanged = e.json()?;
            project(&db, &change)
                .map_err(|err| event::fail(format!("cannot project event `{}`: {err}", e.id)))?;
            println!("projected {} {} v{}", e.type_, change.id, change.version);
        }
        Ok(())
    }
}

fn project(db: &sql::Database, change: &ContactChanged) -> updraft_sdk::Result<()> {
    match &change.contact {
        Some(c) => {
            let a = &c.address;
            let name = format!("{} {}", c.first_name, c.last_name);
            let label = format!(
                "{name}\n{}\n{} {}\n{}",
                a.street, a.postcode, a.city, a.country
            );
            db.execute(
                "INSERT INTO contact_view (id, name, email, street, city, postcode, country, mailing_label, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET name = $2, email = $3, street = $4, city = $5,
                   postcode = $6, country = $7, mailing_label = $8, version = $9, deleted = 0
                 WHERE contact_view.version < $9",
                params![
                    change.id.as_str(),
                    name.as_str(),
                    c.email.as_str(),
                    a.street.as_str(),
                    a.city.as_str(),
                    a.postcode.as_str(),
                    a.country.as_str(),
                    label.as_str(),
                    change.version
                ],
            )?;
        }
        None => {
            // A tombstone, so a late `contact.updated` cannot bring the contact back.
            db.execute(
                "INSERT INTO contact_view (id, name, email, street, city, postcode, country, mailing_label, version, deleted)
                 VALUES ($1, '', '', '', '', '', '', '', $2, 1)
                 ON CONFLICT (id) DO UPDATE SET deleted = 1, version = $2 WHERE contact_view.version < $2",
                params![change.id.as_str(), change.version],
            )?;
        }
    }
    Ok(())
}

updraft_sdk::export_event_handler!(Projector);
