//! The function's variables (`[function.<id>.variables]`).

use crate::bindings::wasi::config::store;

/// The value of variable `name`, if the function has it.
pub fn get(name: &str) -> Option<String> {
    store::get(name).ok().flatten()
}

/// Every variable of the function.
pub fn all() -> Vec<(String, String)> {
    store::get_all().unwrap_or_default()
}
