//! File triggers: a finished change of an object fires its function once, whoever made it
//! (another program writing the folder, `updraft blob`, a restart in between), never for a
//! partial, hidden or temporary file; and none is lost when updraft is killed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use updraft_test_support::{AppDir, Server};

use crate::{bin, cli, eventually, get, kitchen_and_worker, soak_rounds};

fn app(trigger: &str) -> AppDir {
    kitchen_and_worker(&format!(
        r#"
[app]
name = "files"
[kv.default]
[bucket.uploads]

[function.kitchen]
source = "kitchen.wasm"
kv = ["default"]

[function.worker]
source = "worker.wasm"
kv = ["default"]

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.file]]
bucket = "uploads"
function = "worker"
poll = "300ms"
settle = "3s"
{trigger}
"#
    ))
}

fn folder(app: &AppDir) -> PathBuf {
    app.path().join(".updraft/buckets/uploads")
}

/// Writes `name` under the bucket folder the way most programs do: create, write, close.
fn drop_file(app: &AppDir, name: &str, contents: &str) {
    let path = folder(app).join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

async fn number(server: &Server, key: &str) -> u64 {
    match get(server, &format!("/k/kv/get?store=default&key={key}")).await {
        (200, n) => n.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

async fn fired(server: &Server, change: &str, name: &str) -> u64 {
    number(server, &format!("file/{change}/{name}")).await
}

/// Waits until the worker has handled `n` events in all.
async fn handled(server: &Server, n: u64, limit: Duration) -> bool {
    eventually(limit, async || number(server, "count").await >= n).await
}

/// After the wanted events, nothing more comes: several polls pass with the count unchanged.
async fn stays(server: &Server, n: u64) {
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(number(server, "count").await, n, "an event fired twice");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The worker's logs once `done` holds of them (logs are written just after an invocation
/// ends, so possibly after what it did is visible); `Err` with the last logs if never.
async fn logs_until(server: &Server, done: impl Fn(&str) -> bool) -> Result<String, String> {
    let mut logs = String::new();
    let found = eventually(Duration::from_secs(30), async || {
        logs = cli(server, &["logs", "--function", "worker"]).1;
        done(&logs)
    })
    .await;
    if found { Ok(logs) } else { Err(logs) }
}

#[tokio::test]
async fn a_finished_file_fires_once_and_temporary_ones_never() {
    let app = app("prefix = \"incoming/\"\nsuffix = \".csv\"");
    let server = crate::start(&app);
    drop_file(&app, "incoming/a.csv", "id\n1\n");
    // Written under a temporary name, then renamed into place: fires once, for the name.
    drop_file(&app, "incoming/b.csv.part", "id\n2\n");
    std::fs::rename(
        folder(&app).join("incoming/b.csv.part"),
        folder(&app).join("incoming/b.csv"),
    )
    .unwrap();
    // Outside the prefix or suffix, hidden or temporary: never.
    drop_file(&app, "other/c.csv", "x");
    drop_file(&app, "incoming/notes.txt", "x");
    drop_file(&app, "incoming/.hidden.csv", "x");
    drop_file(&app, "incoming/~lock.csv", "x");
    drop_file(&app, "incoming/d.csv.tmp", "x");
    assert!(handled(&server, 2, Duration::from_secs(15)).await);
    assert_eq!(fired(&server, "created", "incoming/a.csv").await, 1);
    assert_eq!(fired(&server, "created", "incoming/b.csv").await, 1);
    stays(&server, 2).await;

    // A rewrite is a modification; an upload through the CLI fires like any other write.
    drop_file(&app, "incoming/a.csv", "id\n1\n3\n");
    let file = app.write("e.csv", "id\n5\n");
    let (code, _, err) = cli(
        &server,
        &[
            "blob",
            "put",
            "uploads",
            "incoming/e.csv",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(handled(&server, 4, Duration::from_secs(15)).await);
    assert_eq!(fired(&server, "modified", "incoming/a.csv").await, 1);
    assert_eq!(fired(&server, "created", "incoming/e.csv").await, 1);
    stays(&server, 4).await;

    // The event says what changed and how to find it.
    let logs = logs_until(&server, |logs| {
        logs.contains("\"bucket\":\"uploads\"") && logs.contains("\"name\":\"incoming/e.csv\"")
    })
    .await;
    assert!(logs.is_ok(), "{logs:?}");
}

#[tokio::test]
async fn a_file_still_being_written_fires_once_for_its_finished_content() {
    let app = app("");
    let server = crate::start(&app);
    // An open file grows in steps slower than a poll; it fires once, after it is closed
    // (`settle` is 3 s, far longer than a step even on a loaded machine).
    let path = folder(&app).join("slow.csv");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..8 {
            writeln!(f, "row {i}").unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    assert!(handled(&server, 1, Duration::from_secs(15)).await);
    stays(&server, 1).await;
    let logs = logs_until(&server, |logs| logs.contains("\"size\":")).await;
    assert!(
        logs.as_ref().is_ok_and(|l| l.contains("\"size\":48")),
        "fired before the file was whole: {logs:?}"
    );
}

#[tokio::test]
async fn changes_made_while_updraft_was_down_fire_after_it_starts() {
    let app = app("events = [\"created\", \"modified\", \"deleted\"]");
    drop_file(&app, "keep.csv", "1");
    drop_file(&app, "change.csv", "1");
    drop_file(&app, "remove.csv", "1");
    let mut server = crate::start(&app);
    assert!(handled(&server, 3, Duration::from_secs(15)).await);
    server.signal(libc::SIGTERM);
    server.wait(Duration::from_secs(30));
    drop(server);

    drop_file(&app, "change.csv", "22");
    std::fs::remove_file(folder(&app).join("remove.csv")).unwrap();
    drop_file(&app, "new.csv", "1");
    let server = crate::start(&app);
    assert!(handled(&server, 6, Duration::from_secs(15)).await);
    assert_eq!(fired(&server, "modified", "change.csv").await, 1);
    assert_eq!(fired(&server, "deleted", "remove.csv").await, 1);
    assert_eq!(fired(&server, "created", "new.csv").await, 1);
    assert_eq!(fired(&server, "created", "keep.csv").await, 1);
    stays(&server, 6).await;
}

#[tokio::test]
async fn existing_skip_leaves_what_was_there_and_fires_for_the_rest() {
    let app = app("existing = \"skip\"");
    drop_file(&app, "old.csv", "1");
    let server = crate::start(&app);
    // `updraft ls` says when the trigger watches (what is there by then is "existing").
    let watching = eventually(Duration::from_secs(15), async || {
        let (_, out, _) = cli(&server, &["ls", "--output", "json"]);
        out.contains("\"watching\": true")
    })
    .await;
    assert!(watching, "{}", cli(&server, &["ls", "--output", "json"]).1);
    drop_file(&app, "new.csv", "1");
    assert!(handled(&server, 1, Duration::from_secs(15)).await);
    assert_eq!(fired(&server, "created", "new.csv").await, 1);
    stays(&server, 1).await;
    assert_eq!(fired(&server, "created", "old.csv").await, 0);
}

#[tokio::test]
async fn a_thousand_files_dropped_at_once_each_fire_once() {
    let app = app("batch = 20");
    let server = crate::start(&app);
    let staging = app.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    for i in 0..1000 {
        std::fs::write(staging.join(format!("f{i:04}.csv")), format!("{i}")).unwrap();
    }
    // One rename per file into the bucket, as fast as the file system takes them.
    let dest = folder(&app).join("drop");
    std::fs::create_dir_all(&dest).unwrap();
    for i in 0..1000 {
        let name = format!("f{i:04}.csv");
        std::fs::rename(staging.join(&name), dest.join(&name)).unwrap();
    }
    assert!(
        handled(&server, 1000, Duration::from_secs(120)).await,
        "handled {}",
        number(&server, "count").await
    );
    stays(&server, 1000).await;
    let (_, keys) = get(&server, "/k/kv/list?store=default&prefix=file/created/").await;
    assert_eq!(keys.split(',').count(), 1000, "every file once");
}

#[tokio::test]
async fn a_failing_file_is_retried_then_dead_lettered_and_the_file_stays() {
    let app = app("max_attempts = 2");
    let server = crate::start(&app);
    drop_file(&app, "fail-always.csv", "x");
    let dlq = eventually(Duration::from_secs(30), async || {
        let (_, out, _) = cli(&server, &["dlq", "ls"]);
        out.lines()
            .any(|l| l.starts_with("uploads.worker") && l.trim_end().ends_with('1'))
    })
    .await;
    let (_, out, _) = cli(&server, &["dlq", "ls"]);
    assert!(dlq, "{out}");
    assert!(folder(&app).join("fail-always.csv").exists());
}

/// Rounds of `kill -9` while files are dropped and handled (two here; `scripts/soak` runs
/// more with `UPDRAFT_SOAK_ROUNDS`): every file is handled at least once, duplicates are
/// counted and printed.
#[tokio::test]
async fn kill_9_while_files_are_dropped_loses_none() {
    let rounds = soak_rounds();
    let per_round = 200;
    let app = app("batch = 10");
    let dest = folder(&app).join("drop");
    std::fs::create_dir_all(&dest).unwrap();
    let mut names = Vec::new();
    for round in 0..rounds {
        let server = crate::start(&app);
        let writer = {
            let dest = dest.clone();
            std::thread::spawn(move || write_files(&dest, round, per_round))
        };
        // Kill while files are still arriving and being handled.
        let killed_at = 60 + (round * 97) % 200;
        tokio::time::sleep(Duration::from_millis(killed_at as u64)).await;
        server.signal(libc::SIGKILL);
        names.extend(writer.join().unwrap());
        drop(server);
    }
    let server = crate::start(&app);
    check_soak("file kill -9 soak (folder)", &server, rounds, &names).await;
}

/// The same on an S3 bucket, with objects uploaded through updraft's admin API: every
/// upload updraft acknowledged is handled at least once.
#[tokio::test]
async fn kill_9_while_objects_are_uploaded_to_s3_loses_none() {
    let s3 = updraft_test_support::s3::S3Server::start();
    let rounds = soak_rounds();
    let app = app("batch = 10");
    // Writes runtime.toml for a fresh S3 bucket (the node it starts is not needed).
    crate::buckets::start_on_s3(&app, &s3, "").signal(libc::SIGKILL);
    let mut names = Vec::new();
    for round in 0..rounds {
        let server = Server::start_with_env(
            bin(),
            app.path(),
            &[],
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
        );
        let uploads = tokio::spawn(upload_until_refused(server.base.clone(), round, 150));
        let killed_at = 300 + (round * 97) % 400;
        tokio::time::sleep(Duration::from_millis(killed_at as u64)).await;
        server.signal(libc::SIGKILL);
        names.extend(uploads.await.unwrap());
        drop(server);
    }
    let server = Server::start_with_env(
        bin(),
        app.path(),
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    check_soak("file kill -9 soak (s3)", &server, rounds, &names).await;
}

/// Uploads `drop/r<round>-<i>.csv` one by one until `n` or until updraft stops answering;
/// returns the names it acknowledged.
async fn upload_until_refused(base: String, round: usize, n: usize) -> Vec<String> {
    let client = crate::client();
    let mut acked = Vec::new();
    for i in 0..n {
        let name = format!("drop/r{round}-{i:04}.csv");
        let url = format!(
            "{base}/_updraft/api/v1/buckets/uploads/objects/{}",
            name.replace('/', "%2F")
        );
        match client.put(url).body("x").send().await {
            Ok(r) if r.status().as_u16() == 201 => acked.push(name),
            _ => break,
        }
    }
    acked
}

/// Waits for every name to be handled, then prints and checks lost and duplicated counts.
async fn check_soak(what: &str, server: &Server, rounds: usize, names: &[String]) {
    let all = names.len();
    // A message the killed node had leased comes back when its lease (30 s) runs out; each
    // poll asks only about the names not seen yet.
    let mut waiting: Vec<String> = names.to_vec();
    eventually(Duration::from_secs(150), async || {
        let mut still = Vec::new();
        for name in &waiting {
            if fired(server, "created", name).await == 0 {
                still.push(name.clone());
            }
        }
        waiting = still;
        waiting.is_empty()
    })
    .await;
    let mut duplicates = 0;
    for name in names {
        duplicates += fired(server, "created", name).await.saturating_sub(1);
    }
    println!(
        "{what}: {rounds} rounds, {all} files, lost {}, duplicated {duplicates}",
        waiting.len()
    );
    assert!(waiting.is_empty(), "lost: {waiting:?}");
}

fn write_files(dest: &Path, round: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let name = format!("r{round}-{i:04}.csv");
            std::fs::write(dest.join(&name), "x").unwrap();
            format!("drop/{name}")
        })
        .collect()
}

/// A function that writes into the bucket its own trigger watches does not trigger itself;
/// the same object written by anyone else still fires.
#[tokio::test]
async fn a_trigger_never_fires_for_what_its_own_function_wrote() {
    let app = kitchen_and_worker(
        r#"
[app]
name = "files"
[kv.default]
[bucket.uploads]

[function.kitchen]
source = "kitchen.wasm"
kv = ["default"]
buckets = ["uploads"]

[function.worker]
source = "worker.wasm"
kv = ["default"]
buckets = ["uploads"]

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.file]]
bucket = "uploads"
function = "worker"
poll = "300ms"
settle = "3s"
"#,
    );
    let server = crate::start(&app);
    drop_file(&app, "job.in", "1");
    // The worker handles job.in and writes job.in.out; that write does not fire.
    assert!(handled(&server, 1, Duration::from_secs(15)).await);
    assert!(
        eventually(Duration::from_secs(10), async || folder(&app)
            .join("job.in.out")
            .exists())
        .await
    );
    stays(&server, 1).await;
    assert_eq!(fired(&server, "created", "job.in.out").await, 0);
    // Another function writing the same bucket does fire it.
    let r = crate::client()
        .post(server.url("/k/blob/put?bucket=uploads&name=from-kitchen.txt"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert!(handled(&server, 2, Duration::from_secs(15)).await);
    assert_eq!(fired(&server, "created", "from-kitchen.txt").await, 1);
}

/// On S3 the trigger finds changes by listing every `poll`; the same events fire.
#[tokio::test]
async fn an_s3_bucket_fires_by_listing() {
    let s3 = updraft_test_support::s3::S3Server::start();
    let app = app("events = [\"created\", \"modified\", \"deleted\"]");
    let server = crate::buckets::start_on_s3(&app, &s3, "");
    let put = |name: &str, body: &str| {
        let file = app.write("upload.tmp", body);
        let (code, _, err) = cli(
            &server,
            &["blob", "put", "uploads", name, file.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{err}");
    };
    put("a.csv", "1");
    assert!(handled(&server, 1, Duration::from_secs(20)).await);
    put("a.csv", "22");
    let (code, _, err) = cli(&server, &["blob", "rm", "uploads", "a.csv"]);
    assert_eq!(code, 0, "{err}");
    // The rewrite and the delete may fall into one listing: the delete still fires.
    assert!(
        eventually(Duration::from_secs(20), async || {
            fired(&server, "deleted", "a.csv").await == 1
        })
        .await
    );
    assert_eq!(fired(&server, "created", "a.csv").await, 1);
    assert!(!folder(&app).join("a.csv").exists());
}

#[test]
fn a_file_trigger_on_an_undeclared_bucket_names_the_fix() {
    let app = kitchen_and_worker(
        r#"
[app]
name = "files"
[function.worker]
source = "worker.wasm"
[[trigger.file]]
bucket = "uploads"
function = "worker"
"#,
    );
    let out = updraft_test_support::run(
        bin(),
        &[
            "up",
            app.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("trigger.file[0].bucket") && err.contains("add a `[bucket.uploads]` table"),
        "{err}"
    );
}
