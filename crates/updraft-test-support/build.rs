//! Builds the guest components in `tests/guests` for `wasm32-wasip2` (in their own
//! workspace and target folder, so the host build never compiles them for the host) and
//! exposes their paths as constants, the way wasmtime's `test-programs` does.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let guests = root.join("tests/guests");
    let target_dir = root.join("target/guests");
    println!("cargo:rerun-if-changed={}", guests.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("crates/updraft-sdk/src").display()
    );

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    // The outer build's settings are for the host; the guest build must not inherit them.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().expect("run cargo for tests/guests");
    assert!(
        status.success(),
        "building tests/guests for wasm32-wasip2 failed"
    );

    let out = target_dir.join("wasm32-wasip2/release");
    let mut consts = String::new();
    for name in ["hello", "kitchen", "sdk", "worker", "escape", "streamer"] {
        let path = out.join(format!("{name}.wasm"));
        assert!(path.is_file(), "{} was not built", path.display());
        consts.push_str(&format!(
            "/// `tests/guests/src/bin/{name}.rs`, built for wasm32-wasip2.\npub const {}: &str = {:?};\n",
            name.to_uppercase(),
            path.display().to_string()
        ));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("guests.rs");
    std::fs::write(dest, consts).expect("write guests.rs");
}
