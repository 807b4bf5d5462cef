//! Lifecycle: build, the compile cache, graceful drain.

use std::time::{Duration, Instant};

use updraft_test_support::{AppDir, Server, guests, run};

use crate::{bin, client, kitchen_app, start};

#[test]
fn second_up_of_an_unchanged_component_loads_from_the_cache() {
    let app = kitchen_app("");
    {
        let server = start(&app);
        assert!(
            server
                .stdout
                .text()
                .contains("function `kitchen`: compiled in"),
            "{}",
            server.stdout.text()
        );
    }
    let server = start(&app);
    let out = server.stdout.text();
    assert!(
        out.contains("function `kitchen`: loaded from cache in"),
        "{out}"
    );
    // A changed component is compiled again.
    drop(server);
    app.guest(guests::HELLO, "kitchen.wasm");
    let server = start(&app);
    assert!(
        server.stdout.text().contains("compiled in"),
        "{}",
        server.stdout.text()
    );
}

#[test]
fn build_runs_the_command_and_up_builds_only_when_stale() {
    let hello = guests::HELLO;
    let app = AppDir::new(&format!(
        r#"
[app]
name = "built"

[function.hello]
source = "out/hello.wasm"
[function.hello.build]
command = "mkdir -p out && cp {hello} out/hello.wasm && echo ran >> build.log"
watch = ["src/*.txt"]

[[trigger.http]]
route = "/hello"
function = "hello"
"#
    ));
    app.write("src/input.txt", "v1");
    let out = run(
        bin(),
        &["build", app.path().to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("built `hello`"));
    let runs = || {
        std::fs::read_to_string(app.path().join("build.log"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(runs(), 1);
    // Up to date: `up` does not build.
    drop(Server::start(bin(), app.path(), &[]));
    assert_eq!(runs(), 1);
    // A watched file changes: `up` builds first.
    std::thread::sleep(Duration::from_millis(1100));
    app.write("src/input.txt", "v2");
    drop(Server::start(bin(), app.path(), &[]));
    assert_eq!(runs(), 2);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let app = kitchen_app("");
    let mut server = Server::start(bin(), app.path(), &["--grace", "10s"]);
    let url = server.url("/k/sleep?ms=4000");
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    // Signal only once the request is in the function (it logs as it starts sleeping).
    crate::stderr_shows(&server, "sleeping 4000 ms").await;
    server.signal(libc::SIGTERM);
    // New connections are refused while draining (once the signal has been handled).
    let refused = crate::eventually(Duration::from_secs(10), async || {
        client()
            .get(server.url("/k/sleep?ms=1"))
            .send()
            .await
            .is_err()
    })
    .await;
    assert!(refused, "new requests were still accepted during the drain");
    let r = in_flight.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "slept\n");
    let status = tokio::task::spawn_blocking(move || server.wait(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("updraft exited");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() >= Duration::from_millis(3900));
}

#[tokio::test]
async fn grace_period_cuts_off_work_that_runs_too_long() {
    let app = kitchen_app("");
    let mut server = Server::start(bin(), app.path(), &["--grace", "500ms"]);
    let url = server.url("/k/sleep?ms=20000");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    // Signal only once the request is in the function (it logs as it starts sleeping).
    crate::stderr_shows(&server, "sleeping 20000 ms").await;
    let started = Instant::now();
    server.signal(libc::SIGINT);
    let (status, took, cut_off, stderr) = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(15));
        let took = started.elapsed();
        // Its last words may still be in the pipe when it has exited.
        let cut_off = server.stderr.wait_for("cut off", Duration::from_secs(10));
        (status, took, cut_off, server.stderr.text())
    })
    .await
    .unwrap();
    assert!(status.expect("exited").success());
    // Well before the 20 s the request would take.
    assert!(took < Duration::from_secs(12), "{took:?}");
    assert!(cut_off, "{stderr}");
    let _ = in_flight.await;
}
