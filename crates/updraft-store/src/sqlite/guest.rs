//! The sandbox around functions' SQL: what a guest statement may not do, enforced by
//! SQLite itself on every connection of a user database (the writer and every reader).
//!
//! An authorizer refuses, while a guest statement is being prepared: `ATTACH` and `DETACH`
//! (reaching other files, such as the platform's `state.db`), transaction control (`BEGIN`,
//! `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`: the writer group-commits many callers'
//! writes, and a guest `COMMIT` would end their transaction), `load_extension`, and every
//! pragma outside a short list of ones that only read or set harmless per-database values.
//! `SQLITE_LIMIT_ATTACHED = 0` backs the `ATTACH` refusal up (and makes `VACUUM INTO`,
//! which attaches its target, fail too). The platform's own statements on the same
//! connections (migrations, the writer's transactions) run outside [`as_guest`] and are not
//! checked.
//!
//! A progress handler interrupts a guest statement once its caller has gone: the runtime
//! drops a host call's future at the invocation's deadline, which sets the call's
//! [`Cancel`] flag, so a runaway query frees its thread (a reader, or the database's only
//! writer) instead of running on after the function timed out.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization, TransactionOperation};
use rusqlite::limits::Limit;

/// Pragmas a function may run: they read the schema or set values that change nothing
/// outside its own rows.
const ALLOWED_PRAGMAS: &[&str] = &[
    "application_id",
    "collation_list",
    "data_version",
    "defer_foreign_keys",
    "foreign_key_check",
    "foreign_key_list",
    "freelist_count",
    "function_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "page_count",
    "pragma_list",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
    "user_version",
];

/// SQLite virtual-machine steps between two looks at the cancel flag.
const PROGRESS_STEPS: std::ffi::c_int = 1_000;

/// Set when the caller of a guest statement has gone (its future was dropped).
#[derive(Clone, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A guard that sets the flag when dropped: hold it across the call's `await`.
    pub(crate) fn on_drop(&self) -> impl Drop + use<> {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        SetOnDrop(self.0.clone())
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

thread_local! {
    /// True while this thread prepares or runs a guest statement.
    static GUEST: Cell<bool> = const { Cell::new(false) };
    /// The running guest call's cancel flag.
    static CANCEL: RefCell<Option<Cancel>> = const { RefCell::new(None) };
    /// What the authorizer refused during the current guest call, first refusal first.
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the sandbox on a connection of a user database.
pub(crate) fn sandbox(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.authorizer(Some(authorize))?;
    conn.progress_handler(PROGRESS_STEPS, Some(caller_gone))?;
    Ok(())
}

/// Runs `f` (which prepares and runs guest statements) under the sandbox, interrupted once
/// `cancel` is set. Returns what was refused, if anything, beside `f`'s result.
pub(crate) fn as_guest<R>(cancel: &Cancel, f: impl FnOnce() -> R) -> (R, Option<String>) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            GUEST.with(|g| g.set(false));
            CANCEL.with(|c| c.borrow_mut().take());
        }
    }
    REFUSED.with(|r| r.borrow_mut().take());
    CANCEL.with(|c| *c.borrow_mut() = Some(cancel.clone()));
    GUEST.with(|g| g.set(true));
    let reset = Reset;
    let result = f();
    drop(reset);
    (result, REFUSED.with(|r| r.borrow_mut().take()))
}

/// Whether the running guest statement's caller has gone (true interrupts it).
fn caller_gone() -> bool {
    GUEST.with(Cell::get) && CANCEL.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_set))
}

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    if !GUEST.with(Cell::get) {
        return Authorization::Allow;
    }
    match refusal(&ctx.action) {
        None => Authorization::Allow,
        Some(what) => {
            REFUSED.with(|r| {
                r.borrow_mut().get_or_insert(what);
            });
            Authorization::Deny
        }
    }
}

/// Why a guest may not do `action`, or `None` when it may.
fn refusal(action: &AuthAction<'_>) -> Option<String> {
    match action {
        AuthAction::Attach { .. } => {
            Some("`ATTACH` is refused: a function's SQL stays inside its own database".to_owned())
        }
        AuthAction::Detach { .. } => {
            Some("`DETACH` is refused: a function's SQL stays inside its own database".to_owned())
        }
        AuthAction::Transaction { operation } => {
            let verb = match operation {
                TransactionOperation::Begin => "BEGIN",
                TransactionOperation::Rollback => "ROLLBACK",
                // SQLite says `COMMIT` (or `END`), which rusqlite does not name.
                _ => "COMMIT",
            };
            Some(transaction_refusal(verb))
        }
        AuthAction::Savepoint { operation, .. } => {
            let verb = match operation {
                TransactionOperation::Release => "RELEASE",
                TransactionOperation::Rollback => "ROLLBACK TO",
                _ => "SAVEPOINT",
            };
            Some(transaction_refusal(verb))
        }
        AuthAction::Function { function_name } if is_load_extension(function_name) => Some(
            "`load_extension` is refused: functions cannot load code into the database".to_owned(),
        ),
        AuthAction::Pragma { pragma_name, .. } => {
            let name = pragma_name.to_ascii_lowercase();
            (!ALLOWED_PRAGMAS.contains(&name.as_str())).then(|| {
                format!(
                    "`PRAGMA {name}` is refused: functions may not change how the database file is stored or checked (allowed: {})",
                    ALLOWED_PRAGMAS.join(", ")
                )
            })
        }
        _ => None,
    }
}

fn is_load_extension(name: &str) -> bool {
    name.eq_ignore_ascii_case("load_extension")
}

fn transaction_refusal(verb: &str) -> String {
    format!(
        "`{verb}` is refused: each `execute`, `query` and `execute-many` call is its own transaction, which updraft commits; use `execute-many` for several rows at once"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandboxed() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        sandbox(&mut conn).unwrap();
        conn
    }

    #[test]
    fn guest_statements_cannot_leave_the_database_or_control_transactions() {
        let conn = sandboxed();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        for (sql, refused) in [
            ("ATTACH DATABASE ':memory:' AS other", "ATTACH"),
            ("DETACH DATABASE main", "DETACH"),
            ("BEGIN", "BEGIN"),
            ("COMMIT", "COMMIT"),
            ("ROLLBACK", "ROLLBACK"),
            ("SAVEPOINT s", "SAVEPOINT"),
            ("RELEASE s", "RELEASE"),
            ("ROLLBACK TO s", "ROLLBACK TO"),
            ("SELECT load_extension('x')", "load_extension"),
            ("PRAGMA journal_mode = delete", "PRAGMA journal_mode"),
            ("PRAGMA writable_schema = 1", "PRAGMA writable_schema"),
            ("PRAGMA database_list", "PRAGMA database_list"),
        ] {
            let (result, why) = as_guest(&Cancel::default(), || conn.execute_batch(sql));
            assert!(result.is_err(), "{sql} ran");
            let why = why.unwrap_or_else(|| panic!("{sql}: no refusal recorded"));
            assert!(why.contains(refused), "{sql}: {why}");
        }
        let (result, why) = as_guest(&Cancel::default(), || {
            conn.execute_batch("VACUUM INTO '/tmp/x.db'")
        });
        assert!(result.is_err(), "VACUUM INTO ran: {why:?}");
        // An `ATTACH` whose file name is a parameter compiles under the authorizer; the
        // attach limit of 0 still stops it when it runs.
        let (result, why) = as_guest(&Cancel::default(), || {
            conn.execute(
                "ATTACH DATABASE ?1 AS other",
                ["/tmp/updraft-attach-probe.db"],
            )
        });
        assert!(result.is_err(), "a parameterised ATTACH ran: {why:?}");
        for sql in [
            "INSERT INTO t VALUES (1)",
            "SELECT * FROM t",
            "PRAGMA table_info(t)",
            "PRAGMA user_version = 3",
        ] {
            let (result, why) = as_guest(&Cancel::default(), || conn.execute_batch(sql));
            assert!(result.is_ok() && why.is_none(), "{sql}: {result:?} {why:?}");
        }
        // The platform's own statements are not checked.
        conn.execute_batch("BEGIN; COMMIT").unwrap();
    }

    #[test]
    fn a_guest_statement_stops_once_its_caller_has_gone() {
        let conn = sandboxed();
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let cancel = Cancel::default();
        let setter = cancel.clone();
        let started = std::time::Instant::now();
        let timer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(setter.on_drop());
        });
        let (result, _) = as_guest(&cancel, || {
            conn.query_row(endless, [], |r| r.get::<_, i64>(0))
        });
        timer.join().unwrap();
        let err = result.unwrap_err().to_string();
        assert!(err.contains("interrupt"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // The platform's own statements are never interrupted by a guest's flag.
        let n: i64 = conn
            .query_row("SELECT count(*) FROM (SELECT 1)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
