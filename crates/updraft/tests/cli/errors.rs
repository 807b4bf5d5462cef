//! Mistakes a user can make get a clear message naming the thing and the fix, and a
//! non-zero exit with a `Caused by:` chain where there is one.

use std::time::Duration;

use updraft_test_support::{AppDir, CORE_MODULE, guests, run};

use crate::bin;

/// Runs `updraft up` on `app` and returns its stderr; asserts it failed.
pub(crate) fn up_fails(app: &AppDir) -> String {
    let out = run(
        bin(),
        &[
            "up",
            app.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: ") || stderr.contains("\nerror: "),
        "{stderr}"
    );
    stderr
}

const ONE_FUNCTION: &str = r#"
[app]
name = "broken"

[function.hello]
source = "hello.wasm"

[[trigger.http]]
route = "/hello"
function = "hello"
"#;

fn app_with(manifest: &str) -> AppDir {
    let app = AppDir::new(manifest);
    app.guest(guests::HELLO, "hello.wasm");
    app
}

#[test]
fn missing_component_says_build_it() {
    let app = AppDir::new(ONE_FUNCTION);
    let e = up_fails(&app);
    assert!(e.contains("function `hello`: cannot read component"), "{e}");
    assert!(e.contains("hello.wasm"), "{e}");
    assert!(e.contains("updraft build"), "{e}");
}

#[test]
fn core_module_says_not_a_component_and_how_to_build_one() {
    let app = AppDir::new(ONE_FUNCTION);
    app.write("hello.wasm", CORE_MODULE);
    let e = up_fails(&app);
    assert!(e.contains("not a component"), "{e}");
    assert!(e.contains("wasm32-wasip2"), "{e}");
    app.write("hello.wasm", "not wasm at all");
    let e = up_fails(&app);
    assert!(e.contains("is not a WebAssembly file"), "{e}");
}

#[test]
fn unknown_manifest_key_is_named() {
    let app = app_with(&ONE_FUNCTION.replace(
        "source = \"hello.wasm\"",
        "source = \"hello.wasm\"\nmemroy = \"64MiB\"",
    ));
    let e = up_fails(&app);
    assert!(e.contains("updraft.toml"), "names the file: {e}");
    assert!(e.contains("function.hello"), "names the key: {e}");
    assert!(e.contains("unknown field `memroy`"), "{e}");
    assert!(e.contains("`memory`"), "lists what is allowed: {e}");
}

#[test]
fn trigger_naming_an_unknown_function() {
    let app = app_with(&ONE_FUNCTION.replace("function = \"hello\"", "function = \"helo\""));
    let e = up_fails(&app);
    assert!(e.contains("trigger.http[0].function"), "{e}");
    assert!(
        e.contains("function `helo` is not declared; add a `[function.helo]` table"),
        "{e}"
    );
}

#[test]
fn colliding_routes() {
    let app = app_with(&format!(
        "{ONE_FUNCTION}\n[[trigger.http]]\nroute = \"/hello\"\nmethods = [\"GET\"]\nfunction = \"hello\"\n"
    ));
    let e = up_fails(&app);
    assert!(e.contains("trigger.http[1].route"), "{e}");
    assert!(e.contains("collides with route #0 `/hello`"), "{e}");
}

#[test]
fn bad_route_pattern_and_reserved_prefix() {
    let app = app_with(&ONE_FUNCTION.replace("route = \"/hello\"", "route = \"/hello/.../more\""));
    let e = up_fails(&app);
    assert!(e.contains("`/hello/.../more` is not a valid route"), "{e}");
    assert!(e.contains("`...` may only be the last segment"), "{e}");
    let app = app_with(&ONE_FUNCTION.replace("route = \"/hello\"", "route = \"/_updraft/mine\""));
    let e = up_fails(&app);
    assert!(e.contains("reserves"), "{e}");
}

#[test]
fn missing_required_variable_names_how_to_set_it() {
    let app = app_with(&format!(
        "{ONE_FUNCTION}\n[variables]\ntoken = {{ required = true, secret = true }}\n"
    ));
    let e = up_fails(&app);
    assert!(e.contains("app variable `token` is required"), "{e}");
    assert!(e.contains("UPDRAFT_VAR_TOKEN"), "{e}");
}

#[test]
fn failing_build_shows_its_output_with_a_cause_chain() {
    let app = AppDir::new(&ONE_FUNCTION.replace(
        "source = \"hello.wasm\"",
        "source = \"hello.wasm\"\n[function.hello.build]\ncommand = \"echo compiling; echo 'error: it broke' >&2; exit 3\"",
    ));
    let out = run(
        bin(),
        &["build", app.path().to_str().unwrap()],
        Duration::from_secs(60),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("function `hello`: build command"), "{e}");
    assert!(e.contains("exit status: 3"), "{e}");
    assert!(e.contains("error: it broke"), "{e}");
}

#[test]
fn not_a_folder_with_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        bin(),
        &["up", dir.path().to_str().unwrap()],
        Duration::from_secs(30),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(e.contains("cannot read manifest"), "{e}");
    assert!(e.contains("updraft.toml"), "{e}");
}

#[test]
fn a_static_folder_that_holds_the_app_is_refused() {
    for dir in [".", "..", "./"] {
        let app = app_with(&format!(
            "{ONE_FUNCTION}\n[[trigger.http]]\nroute = \"/files/...\"\nstatic = \"{dir}\"\n"
        ));
        let e = up_fails(&app);
        assert!(e.contains("trigger.http[1].static"), "{dir}: {e}");
        assert!(e.contains("holds the app itself"), "{dir}: {e}");
    }
}

/// A toolchain without the build's target (installed before `rust-toolchain.toml` asked
/// for it): the error names the target and the `rustup` command, not only rustc's E0463.
#[test]
fn a_build_for_a_target_that_is_not_installed_says_how_to_add_it() {
    let installed = run(
        "rustup",
        &["target", "list", "--installed"],
        Duration::from_secs(60),
    );
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    let target = [
        "wasm32-wasip1",
        "wasm32v1-none",
        "riscv32i-unknown-none-elf",
    ]
    .into_iter()
    .find(|t| !installed.lines().any(|l| l.trim() == *t))
    .expect("one of the candidate targets is not installed");
    let app = AppDir::new(&ONE_FUNCTION.replace(
        "source = \"hello.wasm\"",
        &format!(
            "source = \"hello.wasm\"\n[function.hello.build]\ncommand = \"cargo build --offline --target {target}\"\nworkdir = \"hello\""
        ),
    ));
    app.write(
        "hello/Cargo.toml",
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[lib]\ncrate-type = [\"cdylib\"]\n",
    );
    app.write("hello/src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
    let out = run(
        bin(),
        &["build", app.path().to_str().unwrap()],
        Duration::from_secs(120),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("the Rust target `{target}` is not installed"))
            && e.contains(&format!("rustup target add {target}")),
        "{e}"
    );
}

#[test]
fn dashboard_panels_and_routes_name_their_key() {
    let panel = "\n[sql.orders]\n\n[[dashboard.panel]]\ntitle = \"Orders\"\nsql = \"order\"\nquery = \"SELECT 1\"\n";
    let e = up_fails(&app_with(&format!("{ONE_FUNCTION}{panel}")));
    assert!(e.contains("dashboard.panel[0].sql"), "{e}");
    assert!(
        e.contains("add a `[sql.order]` table (declared: `orders`)"),
        "{e}"
    );
    let collides = format!(
        "{ONE_FUNCTION}{}\n[dashboard]\nroute = \"/hello\"\n",
        panel.replace("\"order\"", "\"orders\"")
    );
    let e = up_fails(&app_with(&collides));
    assert!(
        e.contains("dashboard.route") && e.contains("collides with route #0 `/hello`"),
        "{e}"
    );
}

/// `hello.wasm` with a component-level `producers` section naming `tool`.
fn hello_processed_by(tool: &str) -> Vec<u8> {
    let mut wasm = std::fs::read(guests::HELLO).unwrap();
    wasm.extend(updraft_test_support::producers_section(tool));
    wasm
}

#[test]
fn reuse_is_refused_for_js_guests_and_event_functions() {
    let reuse = ONE_FUNCTION.replace(
        "source = \"hello.wasm\"",
        "source = \"hello.wasm\"\nreuse = 8",
    );
    let app = AppDir::new(&reuse);
    app.write("hello.wasm", hello_processed_by("ComponentizeJS"));
    let e = up_fails(&app);
    assert!(e.contains("function `hello`"), "{e}");
    assert!(e.contains("`ComponentizeJS`"), "{e}");
    assert!(e.contains("reuse = 8") && e.contains("drop `reuse`"), "{e}");

    let event = AppDir::new(
        "[app]\nname = \"broken\"\n\n[function.worker]\nsource = \"worker.wasm\"\nreuse = 2\n",
    );
    event.guest(guests::WORKER, "worker.wasm");
    let e = up_fails(&event);
    assert!(e.contains("function `worker`"), "{e}");
    assert!(e.contains("is for HTTP functions"), "{e}");

    let zero = app_with(&reuse.replace("reuse = 8", "reuse = 0"));
    let e = up_fails(&zero);
    assert!(e.contains("reuse") && e.contains("at least 1"), "{e}");
}
