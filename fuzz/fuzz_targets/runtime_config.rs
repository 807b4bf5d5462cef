//! `runtime.toml`: parsing never panics; a config that parses describes its state backend
//! (which checks the backend's own table) without panicking, and `--store` values too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_server::backends::RuntimeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RuntimeConfig::parse_str(text) {
        Ok(config) => {
            let _ = config.describe_state().map_err(|e| format!("{e:#}"));
            for (label, table) in &config.sql {
                assert!(
                    table.key.contains(label.as_str()),
                    "{} for {label}",
                    table.key
                );
            }
        }
        Err(e) => assert!(!format!("{e:#}").is_empty()),
    }
    let _ = RuntimeConfig::default().with_store(text);
});
