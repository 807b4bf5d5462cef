//! The write side: create, update and delete contacts in the normalised `contacts` database
//! (a header row and an address row) and publish a `contact.*` event for each change.
//!
//! POST /api/contacts, PUT /api/contacts/:id, DELETE /api/contacts/:id. Answers 202: the
//! change is stored and announced; the read model catches up within milliseconds.

use cqrs::{Contact, ContactChanged};
use updraft_sdk::{event, http, messaging, params, sql};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let id = http::param(&req, "id");
    match (req.method().clone(), id) {
        (Method::POST, None) => {
            let id = new_id();
            save(&id, req, true).await
        }
        (Method::PUT, Some(id)) => save(&id, req, false).await,
        (Method::DELETE, Some(id)) => delete(&id),
        (method, _) => http::error(StatusCode::METHOD_NOT_ALLOWED, format!("no {method} here")),
    }
}

/// A contact id: 16 random hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    wstd::rand::get_random_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why `contact` cannot be stored, if it cannot.
fn invalid(contact: &Contact) -> Option<&'static str> {
    let a = &contact.address;
    if contact.first_name.trim().is_empty() || contact.last_name.trim().is_empty() {
        Some("`first_name` and `last_name` are required")
    } else if !contact.email.contains('@') {
        Some("`email` must be an email address")
    } else if [&a.street, &a.city, &a.postcode, &a.country]
        .iter()
        .any(|f| f.trim().is_empty())
    {
        Some("`address` needs `street`, `city`, `postcode` and `country`")
    } else {
        None
    }
}

async fn save(id: &str, req: Request<Body>, create: bool) -> Result<Response<Body>, Error> {
    let contact: Contact = match req.into_body().json().await {
        Ok(c) => c,
        Err(e) => {
            return http::error(
                StatusCode::BAD_REQUEST,
                format!("the body must be a contact as JSON: {e}"),
            );
        }
    };
    if let Some(why) = invalid(&contact) {
        return http::error(StatusCode::UNPROCESSABLE_ENTITY, why);
    }
    let db = sql::Database::open("contacts")?;
    let a = &contact.address;
    let version = if create {
        db.execute(
            "INSERT INTO contact (id, first_name, last_name, email, version) VALUES ($1, $2, $3, $4, 1)",
            params![id, contact.first_name.as_str(), contact.last_name.as_str(), contact.email.as_str()],
        )?;
        1
    } else {
        let changed = db.execute(
            "UPDATE contact SET first_name = $2, last_name = $3, email = $4, version = version + 1 WHERE id = $1",
            params![id, contact.first_name.as_str(), contact.last_name.as_str(), contact.email.as_str()],
        )?;
        if changed == 0 {
            return http::error(StatusCode::NOT_FOUND, format!("no contact `{id}`"));
        }
        version_of(&db, id)?
    };
    db.execute(
        "INSERT INTO address (contact_id, street, city, postcode, country) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (contact_id) DO UPDATE SET street = $2, city = $3, postcode = $4, country = $5",
        params![id, a.street.as_str(), a.city.as_str(), a.postcode.as_str(), a.country.as_str()],
    )?;
    let kind = if create {
        "contact.created"
    } else {
        "contact.updated"
    };
    announce(kind, id, version, Some(contact))?;
    http::json_with(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "id": id, "version": version }),
    )
}

fn delete(id: &str) -> Result<Response<Body>, Error> {
    let db = sql::Database::open("contacts")?;
    let Ok(version) = version_of(&db, id) else {
        return http::error(StatusCode::NOT_FOUND, format!("no contact `{id}`"));
    };
    db.execute("DELETE FROM address WHERE contact_id = $1", params![id])?;
    db.execute("DELETE FROM contact WHERE id = $1", params![id])?;
    announce("contact.deleted", id, version + 1, None)?;
    http::json_with(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "id": id, "deleted": true }),
    )
}

fn version_of(db: &sql::Database, id: &str) -> Result<i64, Error> {
    let rows = db.query("SELECT version FROM contact WHERE id = $1", params![id])?;
    rows.to_json()
        .first()
        .and_then(|r| r["version"].as_i64())
        .ok_or_else(|| Error::msg(format!("no contact `{id}`")))
}

/// Publishes the change. The event id is the contact and version, so a retried request
/// publishes it once.
fn announce(kind: &str, id: &str, version: i64, contact: Option<Contact>) -> Result<(), Error> {
    let change = ContactChanged {
        id: id.to_owned(),
        version,
        contact,
    };
    let e = event::new(kind)
        .id(format!("{id}-v{version}"))
        .subject(format!("contacts/{id}"))
        .json(&change)?;
    messaging::publish("contacts", &e)?;
    Ok(())
}
