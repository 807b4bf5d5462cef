//! Host implementations of updraft's own WIT (`wit/updraft.wit`, world `bindings`):
//! `wasi:keyvalue` and `updraft:platform/kv` over [`KvStore`], `updraft:platform/sql` over
//! [`SqlStore`]. Each checks the function's allow-list when a store or database is opened.

mod kv;
pub mod messaging;
mod sql;

use std::collections::BTreeMap;
use std::sync::Arc;

use updraft_store::{KvStore, SqlStore};

pub use kv::Bucket;
pub use messaging::{QueueHandle, TopicHandle};
pub use sql::Connection;

/// The generated bindings.
pub mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "updraft:platform/bindings",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "updraft:platform/sql.connection": super::Connection,
        },
        require_store_data_send: true,
    });
}

/// The stores and databases an app declares, and which of them one function may use.
#[derive(Clone, Default)]
pub struct Resources {
    /// Every `[kv.<label>]`; `Some` when the function lists it in `kv = [...]`.
    pub kv: BTreeMap<String, Option<Arc<dyn KvStore>>>,
    /// Every `[sql.<label>]`; `Some` when the function lists it in `sql = [...]`.
    pub sql: BTreeMap<String, Option<Arc<dyn SqlStore>>>,
    /// Every `[queue.<name>]`; `Some` when the function lists it in `enqueue = [...]`.
    pub queues: BTreeMap<String, Option<Arc<QueueHandle>>>,
    /// Every `[topic.<name>]`; `Some` when the function lists it in `publish = [...]`.
    pub topics: BTreeMap<String, Option<Arc<TopicHandle>>>,
}

impl Resources {
    /// The kv stores the function may open.
    pub fn allowed_kv(&self) -> Vec<&str> {
        allowed(&self.kv)
    }

    /// The sql databases the function may open.
    pub fn allowed_sql(&self) -> Vec<&str> {
        allowed(&self.sql)
    }

    /// The queues the function may enqueue to.
    pub fn allowed_queues(&self) -> Vec<&str> {
        allowed(&self.queues)
    }

    /// The topics the function may publish to.
    pub fn allowed_topics(&self) -> Vec<&str> {
        allowed(&self.topics)
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("kv", &self.allowed_kv())
            .field("sql", &self.allowed_sql())
            .field("queues", &self.allowed_queues())
            .field("topics", &self.allowed_topics())
            .finish()
    }
}

fn allowed<T: ?Sized>(m: &BTreeMap<String, Option<Arc<T>>>) -> Vec<&str> {
    m.iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.as_str())
        .collect()
}

/// Characters of a name chosen by a guest that a log line or message repeats.
const SHOWN_NAME_CHARS: usize = 100;

/// A guest-chosen name (a label, a queue, a host) as denials log it: cut after
/// [`SHOWN_NAME_CHARS`] characters, so a guest cannot turn each refusal into megabytes of log.
pub(crate) fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        None => std::borrow::Cow::Borrowed(name),
        Some((cut, _)) => {
            std::borrow::Cow::Owned(format!("{}… ({} bytes)", &name[..cut], name.len()))
        }
    }
}

/// Why a label cannot be opened.
pub(crate) enum Denied {
    /// The app declares no such label.
    Unknown,
    /// The app declares it, but this function does not list it.
    NotAllowed,
}

/// Looks `label` up in a function's allow-list.
pub(crate) fn lookup<T: ?Sized>(
    map: &BTreeMap<String, Option<Arc<T>>>,
    label: &str,
) -> Result<Arc<T>, Denied> {
    match map.get(label) {
        None => Err(Denied::Unknown),
        Some(None) => Err(Denied::NotAllowed),
        Some(Some(store)) => Ok(store.clone()),
    }
}
