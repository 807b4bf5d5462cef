//! Host bindings: updraft's own WIT (`wit/updraft.wit`, world `bindings`), one module per
//! binding.
//!
//! A binding owns its WIT interfaces, the guest resources it keeps in the invocation's
//! table and its linking: it implements the generated host traits on [`BindingCtx`] (what
//! a binding sees of one invocation: the function's [`Resources`], the resource table and
//! the caller) and adds a `link` function to [`BINDINGS`]. What a function may reach is its
//! manifest allow-lists ([`updraft_manifest::ALLOW_LISTS`]), handed in as [`Grants`] and
//! checked in one place, [`Grants::open`], which also logs each denial.
//!
//! To add a binding: its WIT in `wit/updraft.wit` (imported by world `bindings`), a module
//! here implementing the traits on `BindingCtx` with a `link` function, one line in
//! [`BINDINGS`], and its allow-list in `updraft-manifest`'s `allow.rs`.

mod blob;
pub(crate) mod http_budget;
mod kv;
pub mod messaging;
pub(crate) mod sandbox;
mod sql;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use updraft_manifest::AllowList;
use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::state::InvocationState;

pub use blob::{Container, IncomingValue, ObjectNames, OutgoingValue};
pub use kv::Bucket;
pub use messaging::{QueueHandle, TopicHandle};
pub use sql::{Connection, Loader};

/// The generated bindings.
pub mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "updraft:platform/bindings",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "updraft:platform/sql.connection": super::Connection,
            "updraft:platform/sql.loader": super::Loader,
            "wasi:blobstore/container.container": super::Container,
            "wasi:blobstore/container.stream-object-names": super::ObjectNames,
            "wasi:blobstore/types.outgoing-value": super::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::IncomingValue,
            // The streams are wasmtime-wasi's own, so `wasi:io` works on them as on any other.
            "wasi:io": wasmtime_wasi::p2::bindings::io,
        },
        require_store_data_send: true,
    });
}

/// A binding's linking step.
type Link = fn(&mut Linker<InvocationState>) -> wasmtime::Result<()>;

/// Every binding, linked into every component's linker (a guest that imports none of an
/// interface never sees it).
const BINDINGS: &[(&str, Link)] = &[
    ("kv", kv::link),
    ("sql", sql::link),
    ("messaging", messaging::link),
    ("blob", blob::link),
];

/// Links every binding of [`BINDINGS`].
pub(crate) fn link_all(linker: &mut Linker<InvocationState>) -> anyhow::Result<()> {
    for (name, link) in BINDINGS {
        link(linker).map_err(|e| {
            anyhow::Error::from(e).context(format!("cannot link the `{name}` binding"))
        })?;
    }
    Ok(())
}

/// Who is calling: named in every denial and log line.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) function: Arc<str>,
    pub(crate) invocation: Arc<str>,
}

impl Caller {
    /// Logs a refusal against the caller's invocation, where the invocation's logs show it.
    pub(crate) fn deny(&self, message: impl std::fmt::Display) {
        tracing::warn!(
            function = %self.function,
            invocation = %self.invocation,
            "{message}"
        );
    }
}

/// What a binding sees of one invocation.
pub struct BindingCtx<'a> {
    pub(crate) resources: &'a Resources,
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) caller: &'a Caller,
    /// The instance's memory cap: what a binding may hand back in one answer.
    pub(crate) memory_cap: usize,
}

/// The [`HasData`] of every binding: each sees a [`BindingCtx`].
pub(crate) struct Binding;

impl HasData for Binding {
    type Data<'a> = BindingCtx<'a>;
}

impl InvocationState {
    /// The view [`BINDINGS`] link with.
    pub(crate) fn binding_ctx(&mut self) -> BindingCtx<'_> {
        BindingCtx {
            resources: &self.resources,
            table: &mut self.table,
            caller: &self.caller,
            memory_cap: self.limiter.memory_cap(),
        }
    }
}

/// One allow-list of a function: every name the app declares, with a handle only where the
/// function lists it.
pub struct Grants<T: ?Sized> {
    list: AllowList,
    by_name: BTreeMap<String, Option<Arc<T>>>,
}

impl<T: ?Sized> Grants<T> {
    /// Grants from every declared resource and the names the function lists.
    pub fn new(list: AllowList, declared: &BTreeMap<String, Arc<T>>, listed: &[String]) -> Self {
        let by_name = declared
            .iter()
            .map(|(name, v)| (name.clone(), listed.contains(name).then(|| v.clone())))
            .collect();
        Self { list, by_name }
    }

    /// The names the function may use.
    pub fn allowed(&self) -> Vec<&str> {
        self.by_name
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// The resource `name`, or why the caller may not have it (logged against the
    /// invocation).
    pub(crate) fn open(&self, caller: &Caller, name: &str) -> Result<Arc<T>, Denial> {
        let shown = shown(name);
        let denial = match self.by_name.get(name) {
            Some(Some(handle)) => return Ok(handle.clone()),
            None => Denial {
                undeclared: true,
                message: self.list.undeclared(&shown),
            },
            Some(None) => Denial {
                undeclared: false,
                message: self.list.not_listed(&caller.function, &shown),
            },
        };
        caller.deny(&denial.message);
        Err(denial)
    }
}

/// Why a name cannot be opened; the message names it and the fix.
pub(crate) struct Denial {
    /// No resource table declares it (else: declared, but not in the function's list).
    pub(crate) undeclared: bool,
    pub(crate) message: String,
}

/// A [`Grants`] of any type, as [`Resources`] keeps it.
trait AnyGrants: Send + Sync {
    fn allowed(&self) -> Vec<&str>;
    fn as_any(&self) -> &dyn Any;
}

impl<T: ?Sized + Send + Sync + 'static> AnyGrants for Grants<T> {
    fn allowed(&self) -> Vec<&str> {
        Grants::allowed(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Everything a function may reach, one [`Grants`] per allow-list.
#[derive(Clone, Default)]
pub struct Resources {
    lists: BTreeMap<&'static str, Arc<dyn AnyGrants>>,
}

impl Resources {
    /// Adds the grants of one allow-list.
    pub fn with<T: ?Sized + Send + Sync + 'static>(mut self, grants: Grants<T>) -> Self {
        self.lists.insert(grants.list.key, Arc::new(grants));
        self
    }

    /// The resource `name` of allow-list `list`, or why the caller may not have it. A list
    /// never added declares nothing.
    pub(crate) fn open<T: ?Sized + Send + Sync + 'static>(
        &self,
        list: &AllowList,
        caller: &Caller,
        name: &str,
    ) -> Result<Arc<T>, Denial> {
        match self
            .lists
            .get(list.key)
            .and_then(|g| g.as_any().downcast_ref::<Grants<T>>())
        {
            Some(grants) => grants.open(caller, name),
            None => Grants::<T> {
                list: *list,
                by_name: BTreeMap::new(),
            }
            .open(caller, name),
        }
    }

    /// Every allow-list with the names the function may use, by manifest key.
    pub fn allow_lists(&self) -> BTreeMap<String, Vec<String>> {
        self.lists
            .iter()
            .map(|(key, grants)| {
                (
                    (*key).to_owned(),
                    grants.allowed().into_iter().map(str::to_owned).collect(),
                )
            })
            .collect()
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.allow_lists()).finish()
    }
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
