//! What WASI offers that updraft refuses a function, each refusal logged against the
//! invocation: sockets, name lookups, files, and variables the function was not given.
//!
//! wasmtime-wasi refuses sockets, name lookups and files itself (no sockets, no lookups, no
//! preopened directories), but silently: an operator whose function fails on a connect
//! would see nothing in its logs. So the calls that ask for them are shadowed here with the
//! same answers wasmtime gives, plus a log line that says what was refused and what to use
//! instead. `wasi:config/store` is defined here too (not by wasmtime-wasi-config), so a
//! `get` of a name the function was not given is logged as well.
//!
//! A guest's own lookups that never reach the host (`std::env::var` reads the environment
//! copied into the instance at start) cannot be logged; they are refused all the same, as
//! the environment holds only the function's variables.

use std::collections::BTreeMap;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceAny, Val};
use wasmtime_wasi::p2::Network;
use wasmtime_wasi::p2::bindings::sockets::network::ErrorCode;

use crate::host::shown;
use crate::state::InvocationState;

/// The WASI 0.2 interfaces wasmtime-wasi 48 defines; a guest's import of any 0.2.x
/// resolves to them.
const TCP_CREATE_SOCKET: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const UDP_CREATE_SOCKET: &str = "wasi:sockets/udp-create-socket@0.2.12";
const IP_NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";
/// The `wasi:config` updraft's WIT imports (`wit/updraft.wit`).
const CONFIG_STORE: &str = "wasi:config/store@0.2.0-rc.1";

type Store<'a> = StoreContextMut<'a, InvocationState>;

/// `result<_, error-code>`'s error case, `code` of `wasi:sockets/network.error-code`.
fn socket_error(code: &str) -> Val {
    Val::Result(Err(Some(Box::new(Val::Enum(code.to_owned())))))
}

/// Shadows the WASI calls wasmtime-wasi refuses silently, and defines `wasi:config/store`.
pub(crate) fn link(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = shadow(linker);
    linker.allow_shadowing(false);
    result?;
    link_config(linker)
}

fn shadow(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    for (interface, func, kind) in [
        (TCP_CREATE_SOCKET, "create-tcp-socket", "tcp"),
        (UDP_CREATE_SOCKET, "create-udp-socket", "udp"),
    ] {
        linker
            .instance(interface)?
            .func_new(func, move |store: Store<'_>, _, _, results| {
                let caller = &store.data().caller;
                caller.deny(
                    format_args!(
                        "{kind} socket denied: functions have no sockets; reach other services over HTTP, listing them in `allowed_outbound_hosts` of function `{}`",
                        caller.function
                    ),
                );
                results[0] = socket_error("access-denied");
                Ok(())
            })?;
    }
    // Typed, so the borrowed `network` handle is released as the call ends.
    linker.instance(IP_NAME_LOOKUP)?.func_wrap(
        "resolve-addresses",
        |store: Store<'_>, (_network, name): (Resource<Network>, String)| {
            let caller = &store.data().caller;
            caller.deny(
                format_args!(
                    "name lookup of `{}` denied: functions do not resolve names; an outbound HTTP request to a host in `allowed_outbound_hosts` of function `{}` resolves it",
                    shown(&name),
                    caller.function
                ),
            );
            Ok((Err::<ResourceAny, _>(ErrorCode::PermanentResolverFailure),))
        },
    )?;
    linker.instance(PREOPENS)?.func_new(
        "get-directories",
        |store: Store<'_>, _, _, results| {
            let caller = &store.data().caller;
            caller.deny(
                format_args!(
                    "file system access denied: function `{}` has no directories; keep files in a blob container listed in its `blob`",
                    caller.function
                ),
            );
            results[0] = Val::List(Vec::new());
            Ok(())
        },
    )?;
    Ok(())
}

/// The variables a function sees through `wasi:config/store`, by name.
pub(crate) type Variables = BTreeMap<String, String>;

/// `wasi:config/store`: `get` and `get-all` over the function's variables; a `get` of any
/// other name answers none and is logged.
fn link_config(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    let mut store = linker.instance(CONFIG_STORE)?;
    store.func_new("get", |store: Store<'_>, _, params, results| {
        let state = store.data();
        let Some(Val::String(key)) = params.first() else {
            return Err(wasmtime::format_err!("wasi:config/store get takes a string"));
        };
        let value = state.config.get(key).map(|v| Box::new(Val::String(v.clone())));
        if value.is_none() {
            let caller = &state.caller;
            caller.deny(
                format_args!(
                    "variable `{}` denied: function `{}` was not given it; add it to `[function.{}.variables]`",
                    shown(key),
                    caller.function,
                    caller.function
                ),
            );
        }
        results[0] = Val::Result(Ok(Some(Box::new(Val::Option(value)))));
        Ok(())
    })?;
    store.func_new("get-all", |store: Store<'_>, _, _, results| {
        let pairs = store
            .data()
            .config
            .iter()
            .map(|(k, v)| Val::Tuple(vec![Val::String(k.clone()), Val::String(v.clone())]))
            .collect();
        results[0] = Val::Result(Ok(Some(Box::new(Val::List(pairs)))));
        Ok(())
    })?;
    Ok(())
}
