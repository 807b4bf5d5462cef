//! A budget on the host memory a function takes through `wasi:http`.
//!
//! Header maps (`fields`) and an outgoing request's method, path, scheme and authority live
//! in host memory, outside the linear memory the function's `memory` limit caps: without a
//! budget, a 32 MiB function could hold 4,000 header maps of 100 KiB (400 MB of host memory)
//! in a tenth of a second. So every `wasi:http/types` call that copies guest bytes into the
//! host is shadowed here: it charges what it keeps to the invocation's [`HttpBudget`] (the
//! function's memory limit, counted from the invocation's start and never given back, which
//! a real function never comes near) and then runs wasmtime-wasi-http's own
//! implementation. Past the budget the invocation traps as a memory-limit failure, naming
//! what it was doing.
//!
//! Handles of every other kind (streams, pollables, …) are bounded by the resource
//! table's capacity, [`MAX_HANDLES`].

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{
    self as wit, HeaderError, HostFields, HostOutgoingRequest as _, Method, Scheme,
};
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;

use crate::state::InvocationState;

/// The `wasi:http/types` instance wasmtime-wasi-http 48 defines; a guest's import of any
/// 0.2.x resolves to it.
const TYPES: &str = "wasi:http/types@0.2.12";

/// Live resource handles one invocation may hold (wasmtime's default is 1,000,000).
pub(crate) const MAX_HANDLES: usize = 65_536;

/// What a header map costs before its entries: the map and its table slot.
const MAP_COST: usize = 256;
/// What one header entry costs beyond its name and value bytes.
const ENTRY_COST: usize = 64;

/// Bytes of host memory an invocation may still take through `wasi:http`.
#[derive(Debug)]
pub(crate) struct HttpBudget {
    limit: usize,
    used: usize,
}

impl HttpBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, used: 0 }
    }
}

/// The trap that ends an invocation past its budget: what it was doing.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} would take the host memory held through wasi:http past the function's `memory` limit"
)]
pub(crate) struct OverBudget {
    pub(crate) what: &'static str,
}

/// Charges `bytes` for `what`, or the trap that ends the invocation.
fn charge(state: &mut InvocationState, bytes: usize, what: &'static str) -> wasmtime::Result<()> {
    let budget = &mut state.http_budget;
    let used = budget.used.saturating_add(bytes);
    if used > budget.limit {
        return Err(OverBudget { what }.into());
    }
    budget.used = used;
    Ok(())
}

fn entry_cost(name: &str, value: usize) -> usize {
    name.len() + value + ENTRY_COST
}

fn header_error(
    state: &mut InvocationState,
    e: wasmtime_wasi_http::p2::HeaderError,
) -> wasmtime::Result<HeaderError> {
    wit::Host::convert_header_error(&mut state.http(), e)
}

/// Shadows the `wasi:http/types` functions that copy guest bytes into the host.
pub(crate) fn link(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = shadow(linker);
    linker.allow_shadowing(false);
    result
}

type Store<'a> = StoreContextMut<'a, InvocationState>;

fn shadow(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    let mut types = linker.instance(TYPES)?;
    types.func_wrap("[constructor]fields", |mut store: Store<'_>, (): ()| {
        let s = store.data_mut();
        charge(s, MAP_COST, "a new header map")?;
        Ok((HostFields::new(&mut s.http())?,))
    })?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store: Store<'_>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let s = store.data_mut();
            let bytes = entries
                .iter()
                .map(|(n, v)| entry_cost(n, v.len()))
                .fold(MAP_COST, usize::saturating_add);
            charge(s, bytes, "a header map from a list")?;
            match HostFields::from_list(&mut s.http(), entries) {
                Ok(fields) => Ok((Ok(fields),)),
                Err(e) => Ok((Err(header_error(s, e)?),)),
            }
        },
    )?;
    types.func_wrap(
        "[method]fields.set",
        |mut store: Store<'_>,
         (fields, name, values): (Resource<FieldMap>, String, Vec<Vec<u8>>)| {
            let s = store.data_mut();
            let bytes = values
                .iter()
                .map(|v| entry_cost(&name, v.len()))
                .fold(0, usize::saturating_add);
            charge(s, bytes, "setting a header")?;
            match HostFields::set(&mut s.http(), fields, name, values) {
                Ok(()) => Ok((Ok(()),)),
                Err(e) => Ok((Err(header_error(s, e)?),)),
            }
        },
    )?;
    types.func_wrap(
        "[method]fields.append",
        |mut store: Store<'_>, (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            let s = store.data_mut();
            charge(s, entry_cost(&name, value.len()), "appending a header")?;
            match HostFields::append(&mut s.http(), fields, name, value) {
                Ok(()) => Ok((Ok(()),)),
                Err(e) => Ok((Err(header_error(s, e)?),)),
            }
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store: Store<'_>, (fields,): (Resource<FieldMap>,)| {
            let s = store.data_mut();
            let bytes = s
                .table
                .get(&fields)?
                .iter()
                .map(|(n, v)| entry_cost(n.as_str(), v.len()))
                .fold(MAP_COST, usize::saturating_add);
            charge(s, bytes, "a copy of a header map")?;
            Ok((HostFields::clone(&mut s.http(), fields)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-method",
        |mut store: Store<'_>, (request, method): (Resource<HostOutgoingRequest>, Method)| {
            let s = store.data_mut();
            if let Method::Other(m) = &method {
                charge(s, m.len(), "an outgoing request's method")?;
            }
            Ok((s.http().set_method(request, method)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-path-with-query",
        |mut store: Store<'_>, (request, path): (Resource<HostOutgoingRequest>, Option<String>)| {
            let s = store.data_mut();
            charge(
                s,
                path.as_ref().map_or(0, String::len),
                "an outgoing request's path",
            )?;
            Ok((s.http().set_path_with_query(request, path)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-scheme",
        |mut store: Store<'_>,
         (request, scheme): (Resource<HostOutgoingRequest>, Option<Scheme>)| {
            let s = store.data_mut();
            if let Some(Scheme::Other(other)) = &scheme {
                charge(s, other.len(), "an outgoing request's scheme")?;
            }
            Ok((s.http().set_scheme(request, scheme)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-authority",
        |mut store: Store<'_>,
         (request, authority): (Resource<HostOutgoingRequest>, Option<String>)| {
            let s = store.data_mut();
            charge(
                s,
                authority.as_ref().map_or(0, String::len),
                "an outgoing request's authority",
            )?;
            Ok((s.http().set_authority(request, authority)?,))
        },
    )?;
    Ok(())
}
