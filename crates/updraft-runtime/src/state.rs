//! What one instance's `Store` holds: its WASI context, HTTP context, config variables and
//! limits. A fresh one is built for every invocation, unless the function opts into reuse:
//! then [`InvocationState::rebind`] points it at the next invocation.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::host::{Caller, Resources};
use crate::limits::Limiter;
use crate::outbound::OutboundPolicy;

/// The `T` of every `Store<T>`.
pub struct InvocationState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) outbound: OutboundPolicy,
    pub(crate) config: Arc<crate::host::sandbox::Variables>,
    pub(crate) limiter: Limiter,
    pub(crate) http_budget: crate::host::http_budget::HttpBudget,
    pub(crate) resources: Arc<Resources>,
    pub(crate) caller: Caller,
    /// When the running invocation times out; the epoch callback checks it.
    pub(crate) deadline: Instant,
}

impl InvocationState {
    /// Makes a kept instance's state that of the next invocation: its id (in outbound
    /// requests and refusals), its deadline, and a clean memory-cap flag.
    pub(crate) fn rebind(&mut self, invocation: &Arc<str>, deadline: Instant) {
        self.outbound.invocation = invocation.clone();
        self.caller.invocation = invocation.clone();
        self.deadline = deadline;
        self.limiter.hit_memory_cap = false;
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
