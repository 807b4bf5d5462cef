//! The command side: appends account events to the `accounts` topic, and answers reads from
//! the `views` read model that `balances` derives from those events.
//!
//! POST /api/accounts {"owner"}; POST /api/accounts/:id/deposit|withdraw {"amount"} (cents,
//! with an `Idempotency-Key` header to make a retry safe); GET /api/accounts/:id.

use event_sourcing::{DEPOSITED, Movement, OPENED, Opened, WITHDRAWN};
use serde::Deserialize;
use updraft_sdk::{event, http, messaging, params, sql};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[derive(Deserialize)]
struct Open {
    owner: String,
}

#[derive(Deserialize)]
struct Amount {
    amount: i64,
}

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let id = http::param(&req, "id");
    let operation = http::param(&req, "operation");
    match (req.method().clone(), id, operation.as_deref()) {
        (Method::POST, None, None) => open(req).await,
        (Method::GET, Some(id), None) => account(&id),
        (Method::POST, Some(id), Some("deposit")) => movement(&id, DEPOSITED, req).await,
        (Method::POST, Some(id), Some("withdraw")) => movement(&id, WITHDRAWN, req).await,
        (_, _, Some(op)) => http::error(
            StatusCode::NOT_FOUND,
            format!("no operation `{op}`; use `deposit` or `withdraw`"),
        ),
        (method, _, _) => http::error(StatusCode::METHOD_NOT_ALLOWED, format!("no {method} here")),
    }
}

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    wstd::rand::get_random_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn open(req: Request<Body>) -> Result<Response<Body>, Error> {
    let Ok(input) = req.into_body().json::<Open>().await else {
        return http::error(StatusCode::BAD_REQUEST, "send {\"owner\": \"...\"}");
    };
    if input.owner.trim().is_empty() {
        return http::error(StatusCode::UNPROCESSABLE_ENTITY, "`owner` is required");
    }
    let account = new_id();
    let opened = Opened {
        account: account.clone(),
        owner: input.owner,
    };
    let e = event::new(OPENED)
        .id(format!("{account}-opened"))
        .subject(format!("accounts/{account}"))
        .json(&opened)?;
    messaging::publish("accounts", &e)?;
    http::json_with(StatusCode::CREATED, &serde_json::json!({ "id": account }))
}

async fn movement(account: &str, kind: &str, req: Request<Body>) -> Result<Response<Body>, Error> {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok(Amount { amount }) = req.into_body().json::<Amount>().await else {
        return http::error(StatusCode::BAD_REQUEST, "send {\"amount\": <cents>}");
    };
    if amount <= 0 {
        return http::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`amount` must be positive",
        );
    }
    let Some(balance) = balance(account)? else {
        return http::error(StatusCode::NOT_FOUND, format!("no account `{account}`"));
    };
    // Checked against the read model, which trails the log by milliseconds: good enough for
    // an example; a bank would keep the write side's own state (see the README).
    if kind == WITHDRAWN && amount > balance {
        return http::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("insufficient funds: the balance is {balance}"),
        );
    }
    // The same idempotency key gives the same event id, which the topic stores once.
    let id = match key {
        Some(k) => format!("{account}-{k}"),
        None => format!("{account}-{}", new_id()),
    };
    let e = event::new(kind)
        .id(id.clone())
        .subject(format!("accounts/{account}"))
        .json(&Movement {
            account: account.to_owned(),
            amount,
        })?;
    messaging::publish("accounts", &e)?;
    http::json_with(StatusCode::ACCEPTED, &serde_json::json!({ "event": id }))
}

fn balance(account: &str) -> Result<Option<i64>, Error> {
    let rows = sql::Database::open("views")?.query(
        "SELECT a.id, COALESCE(SUM(e.amount), 0) AS balance FROM account a
         LEFT JOIN entry e ON e.account_id = a.id WHERE a.id = $1 GROUP BY a.id",
        params![account],
    )?;
    Ok(rows.to_json().first().and_then(|r| r["balance"].as_i64()))
}

fn account(id: &str) -> Result<Response<Body>, Error> {
    let db = sql::Database::open("views")?;
    let Some(balance) = balance(id)? else {
        return http::error(StatusCode::NOT_FOUND, format!("no account `{id}`"));
    };
    let owner = db.query("SELECT owner FROM account WHERE id = $1", params![id])?;
    let entries = db.query(
        "SELECT event_id, kind, amount, at FROM entry WHERE account_id = $1 ORDER BY at, event_id",
        params![id],
    )?;
    http::json(&serde_json::json!({
        "id": id,
        "owner": owner.to_json().first().map(|r| r["owner"].clone()),
        "balance": balance,
        "entries": entries.to_json(),
    }))
}
