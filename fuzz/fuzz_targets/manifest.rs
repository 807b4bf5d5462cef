//! `updraft.toml`: `Manifest::parse`, then the triggers through the registry
//! (`updraft_triggers::parse_app`), never panic; a manifest the first refuses the second
//! refuses too, and every error has a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let manifest = updraft_manifest::Manifest::parse(text);
    let app = updraft_triggers::parse_app(text);
    match (&manifest, &app) {
        (Err(e), _) => {
            assert!(
                app.is_err(),
                "parse_app accepted what Manifest::parse refused: {e}"
            );
            assert!(!e.to_string().is_empty());
        }
        (Ok(_), Err(e)) => assert!(!e.to_string().is_empty()),
        (Ok(_), Ok((_, triggers))) => {
            let _ = triggers.describe();
        }
    }
});
