//! Scenario 8, streams, driven the way a user would: events `POST`ed to an `[[ingest.http]]`
//! route of `updraft up`, a `[[trigger.stream]]` running the `streamer` guest, which records
//! what it was handed, in order, into a sql table the test reads through the admin API.
//! Per-key order over 100,000 events on 16 partitions, a poison record found by bisecting
//! and dead-lettered with its offset, replay, ticks, refused batches that store nothing,
//! and `kill -9` in mid-stream losing nothing acknowledged.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use updraft_test_support::{AppDir, Server, guests};

use crate::{bin, cli, client, eventually};

/// An app with stream `readings` (keyed by the data's `key`), its ingest route `/ingest`,
/// and the `streamer` guest consuming it; `stream` and `trigger` are extra keys of each.
fn app(stream: &str, trigger: &str) -> AppDir {
    let app = AppDir::new(&format!(
        r#"
[app]
name = "telemetry"

[sql.app]

[stream.readings]
key = "data.key"
{stream}

[[ingest.http]]
route = "/ingest"
stream = "readings"

[function.streamer]
source = "streamer.wasm"
sql = ["app"]

[[trigger.stream]]
stream = "readings"
function = "streamer"
start = "earliest"
{trigger}
"#
    ));
    app.guest(guests::STREAMER, "streamer.wasm");
    app
}

/// JSON lines of readings `(key, seq)`.
fn lines(readings: impl IntoIterator<Item = (String, u64)>) -> String {
    readings
        .into_iter()
        .map(|(key, seq)| format!("{{\"key\":\"{key}\",\"seq\":{seq},\"celsius\":21.5}}\n"))
        .collect()
}

async fn ingest(server: &Server, body: String) -> (u16, String) {
    let r = client()
        .post(server.url("/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("ingest");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// One row of numbers from a read-only query of sql database `app`.
async fn numbers(server: &Server, sql: &str) -> Vec<i64> {
    let r = client()
        .post(server.url("/_updraft/api/v1/sql/app/query"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .expect("query");
    if r.status() != 200 {
        return Vec::new(); // the table may not exist yet
    }
    let v: Value = r.json().await.expect("json");
    v["rows"][0]
        .as_array()
        .map(|row| row.iter().map(|x| x.as_i64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

async fn seen(server: &Server) -> i64 {
    numbers(server, "SELECT count(*) FROM seen")
        .await
        .first()
        .copied()
        .unwrap_or(0)
}

async fn wait_seen(server: &Server, want: i64, limit: Duration) {
    let ok = eventually(limit, async || seen(server).await >= want).await;
    assert!(
        ok,
        "the consumer recorded {} of {want} events within {limit:?}; stderr:\n{}",
        seen(server).await,
        server.stderr.text()
    );
}

async fn streams(server: &Server) -> Value {
    let (code, out, err) = cli(server, &["streams", "ls", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("streams ls json")
}

/// Waits (up to 30 s) until the bridge `client` has subscribed on `broker`: a message
/// published before that is not for it.
async fn wait_subscribed(broker: &updraft_test_support::Mosquitto, client: &str) {
    let needle = format!("{client} 1 sensors/+/reading");
    let subscribed = eventually(Duration::from_secs(30), async || {
        broker.log().contains(&needle)
    })
    .await;
    assert!(subscribed, "`{client}` never subscribed:\n{}", broker.log());
}

/// Out-of-order deliveries per key, counted by the table in the order rows were written.
const VIOLATIONS: &str = "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY key ORDER BY id) AS prev FROM seen) WHERE prev IS NOT NULL AND seq <= prev";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_over_100k_events_on_16_partitions() {
    const KEYS: u64 = 2_000;
    const PER_KEY: u64 = 50;
    let app = app("partitions = 16", "batch = { max = 500 }");
    let server = Server::start(bin(), app.path(), &[]);
    let started = Instant::now();
    // Each request holds 1,000 readings across keys; one key's readings go in order.
    let all: Vec<(String, u64)> = (0..PER_KEY)
        .flat_map(|seq| (0..KEYS).map(move |k| (format!("device-{k}"), seq)))
        .collect();
    for chunk in all.chunks(1_000) {
        let (status, body) = ingest(&server, lines(chunk.iter().cloned())).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"stored\":1000"), "{body}");
    }
    let ingested = started.elapsed();
    let total = (KEYS * PER_KEY) as i64;
    wait_seen(&server, total, Duration::from_secs(240)).await;
    let processed = started.elapsed();
    let counts = numbers(
        &server,
        "SELECT count(*), count(DISTINCT key || '/' || seq), count(DISTINCT partition) FROM seen",
    )
    .await;
    let violations = numbers(&server, VIOLATIONS).await[0];
    println!(
        "100,000 events on 16 partitions: ingested in {ingested:?}, processed by {processed:?}; rows {}, distinct {}, order violations {violations}",
        counts[0], counts[1]
    );
    assert_eq!(violations, 0, "per-key order broke");
    assert_eq!(
        counts,
        [total, total, 16],
        "lost or duplicated events, or idle partitions"
    );
    let info = streams(&server).await;
    let readings = &info[0];
    assert_eq!(readings["name"], "readings");
    assert_eq!(readings["events"], total);
    assert_eq!(
        readings["partition_states"].as_array().map(Vec::len),
        Some(16)
    );
    let consumer = &readings["consumers"][0];
    assert_eq!(consumer["name"], "streamer");
    assert_eq!(consumer["lag"], 0, "{consumer}");
    let (_, text, _) = cli(&server, &["streams", "ls"]);
    assert!(
        text.contains("stream `readings`: 16 partitions, 100000 events"),
        "{text}"
    );
    assert!(text.contains("consumer `streamer`: lag 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_with_its_offset_and_the_partition_goes_on() {
    let app = app(
        "partitions = 1",
        "batch = { max = 64 }\nmax_attempts = 2\nbackoff = \"50ms\"",
    );
    let server = Server::start(bin(), app.path(), &[]);
    let mut body = lines((0..100).map(|i| (format!("d{}", i % 7), i)));
    body.push_str("{\"key\":\"d3\",\"seq\":100,\"poison\":true}\n");
    body.push_str(&lines((101..200).map(|i| (format!("d{}", i % 7), i))));
    let (status, reply) = ingest(&server, body).await;
    assert_eq!(status, 200, "{reply}");
    wait_seen(&server, 199, Duration::from_secs(60)).await;
    let (code, out, err) = cli(&server, &["streams", "dlq", "readings", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let dead: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(dead.as_array().map(Vec::len), Some(1), "{dead}");
    assert_eq!(dead[0]["partition"], 0);
    assert_eq!(dead[0]["offset"], 100, "the poison record's own offset");
    assert_eq!(dead[0]["consumer"], "streamer");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("poison reading"),
        "{dead}"
    );
    assert!(
        dead[0]["data"]
            .as_str()
            .unwrap_or("")
            .contains("\"poison\":true"),
        "{dead}"
    );
    // Everything else went through, once each, in order.
    let counts = numbers(
        &server,
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM seen",
    )
    .await;
    assert_eq!(counts, [199, 199, 0, 199]);
    assert_eq!(numbers(&server, VIOLATIONS).await[0], 0);
    let (_, text, _) = cli(&server, &["streams", "dlq", "readings"]);
    assert!(
        text.contains("streamer") && text.contains("poison reading"),
        "{text}"
    );
    let info = streams(&server).await;
    assert_eq!(info[0]["consumers"][0]["dead_letters"], 1);
    assert_eq!(info[0]["consumers"][0]["lag"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_goes_back_and_quiet_partitions_tick() {
    let app = app("partitions = 2\ntick = \"1s\"", "");
    let server = Server::start(bin(), app.path(), &[]);
    let (status, reply) = ingest(&server, lines((0..40).map(|i| (format!("k{}", i % 4), i)))).await;
    assert_eq!(status, 200, "{reply}");
    wait_seen(&server, 40, Duration::from_secs(60)).await;
    // Idle partitions tell the function, so windows can close on quiet keys.
    let ticked = eventually(Duration::from_secs(30), async || {
        numbers(&server, "SELECT count(*) FROM ticks").await.first() == Some(&2)
    })
    .await;
    assert!(
        ticked,
        "no tick per partition; stderr:\n{}",
        server.stderr.text()
    );
    let (code, out, err) = cli(
        &server,
        &[
            "streams",
            "replay",
            "readings",
            "--function",
            "streamer",
            "--from-offset",
            "0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("goes back over 40 events in 2 partitions"),
        "{out}"
    );
    wait_seen(&server, 80, Duration::from_secs(60)).await;
    let counts = numbers(&server, "SELECT count(*), count(DISTINCT seq) FROM seen").await;
    assert_eq!(counts, [80, 40], "each event once more after the replay");
    // A replay naming what is not there says so.
    let (code, _, err) = cli(
        &server,
        &[
            "streams",
            "replay",
            "readings",
            "--function",
            "nobody",
            "--from-offset",
            "0",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("no consumer `nobody`") && err.contains("`streamer`"),
        "{err}"
    );
    let (code, _, err) = cli(
        &server,
        &[
            "streams",
            "replay",
            "pressure",
            "--function",
            "streamer",
            "--since",
            "2026-01-01T00:00:00Z",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("stream `pressure` is not declared"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_store_nothing_and_say_why() {
    let app = app("partitions = 2", "");
    let server = Server::start(bin(), app.path(), &[]);
    let good = lines((0..3).map(|i| (format!("k{i}"), i)));
    // A line that is not JSON: 400 naming the line, and none of the batch is stored.
    let (status, reply) = ingest(&server, format!("{good}{{\"key\": \"k9\", \n")).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply.contains("line 4") && reply.contains("not JSON"),
        "{reply}"
    );
    assert!(reply.contains("nothing of the batch was stored"), "{reply}");
    // A reading without the stream's key.
    let (status, reply) = ingest(&server, format!("{good}{{\"seq\": 5}}\n")).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply.contains("`data.key` field") && reply.contains("stream `readings`"),
        "{reply}"
    );
    // A CloudEvents batch with a bad event.
    let r = client()
        .post(server.url("/ingest"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(r#"[{"specversion":"1.0","id":"1","source":"/d","type":"t","data":{"key":"a","seq":1}},{"id":"2"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let empty = ingest(&server, "\n\n".to_owned()).await;
    assert_eq!(empty.0, 400, "{}", empty.1);
    assert!(empty.1.contains("no events"), "{}", empty.1);
    let info = streams(&server).await;
    assert_eq!(
        info[0]["events"], 0,
        "a refused batch stored something: {info}"
    );
    // Only POST takes events.
    let r = client().get(server.url("/ingest")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // A good CloudEvents batch is stored, and structured lines keep their ids.
    let r = client()
        .post(server.url("/ingest"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(r#"[{"specversion":"1.0","id":"ce-1","source":"/d","type":"reading","data":{"key":"a","seq":1}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = r#"{"specversion":"1.0","id":"ce-2","source":"/d","type":"reading","data":{"key":"a","seq":2}}"#;
    assert_eq!(ingest(&server, format!("{line}\n{good}")).await.0, 200);
    wait_seen(&server, 5, Duration::from_secs(60)).await;
    assert_eq!(streams(&server).await[0]["events"], 5);
}

#[test]
fn stream_manifest_mistakes_are_keyed_and_say_the_fix() {
    let cases = [
        (
            "[stream.readings]\npartitions = 0\n",
            "stream.readings.partitions",
            "between 1 and 256",
        ),
        (
            "[stream.readings]\nkey = \"Device-ID\"\n",
            "stream.readings.key",
            "not a CloudEvents attribute name",
        ),
        (
            "[stream.readings]\n[[ingest.http]]\nroute = \"/in\"\nstream = \"reading\"\n",
            "ingest.http[0].stream",
            "add a `[stream.reading]` table",
        ),
        (
            "[stream.readings]\n[[ingest.http]]\nroute = \"/in\"\nstream = \"readings\"\nauth = [\"devices\"]\n",
            "ingest.http[0].auth",
            "[gateway.auth.devices]",
        ),
        (
            "[stream.readings]\n[[ingest.mqtt]]\nbroker = \"mqtt://127.0.0.1:1883\"\ntopics = [\"a/#/b\"]\nstream = \"readings\"\n",
            "ingest.mqtt[0].topics",
            "`#` may only be the last level",
        ),
        (
            "[stream.readings]\n[[ingest.mqtt]]\nbroker = \"tcp://127.0.0.1:1883\"\ntopics = [\"a/+\"]\nstream = \"readings\"\n",
            "ingest.mqtt[0].broker",
            "mqtts://broker.example.com:8883",
        ),
        (
            "[stream.readings]\n[[ingest.mqtt]]\nbroker = \"mqtt://127.0.0.1:1883\"\ntopics = [\"a/+\"]\nstream = \"readings\"\nca = \"ca.pem\"\n",
            "ingest.mqtt[0].ca",
            "mqtts://host:port",
        ),
        (
            "[stream.readings]\n[[trigger.stream]]\nstream = \"reading\"\nfunction = \"streamer\"\n",
            "trigger.stream[0].stream",
            "(declared: `readings`)",
        ),
        (
            "[stream.readings]\n[[trigger.stream]]\nstream = \"readings\"\nfunction = \"streamer\"\nbatch = { max = 0 }\n",
            "trigger.stream[0].batch.max",
            "between 1 and 10000",
        ),
        (
            "[stream.readings]\n[[trigger.stream]]\nstream = \"readings\"\nfunction = \"streamer\"\nstart = \"middle\"\n",
            "trigger.stream[0].start",
            "latest",
        ),
    ];
    for (extra, key, fix) in cases {
        let app = AppDir::new(&format!(
            "[app]\nname = \"t\"\n[function.streamer]\nsource = \"streamer.wasm\"\n{extra}"
        ));
        app.guest(guests::STREAMER, "streamer.wasm");
        let err = crate::errors::up_fails(&app);
        assert!(err.contains(key) && err.contains(fix), "{extra}\n=> {err}");
    }
}

/// Ids `key/seq` the app recorded.
async fn recorded(server: &Server) -> (HashSet<String>, i64) {
    let r = client()
        .post(server.url("/_updraft/api/v1/sql/app/query"))
        .json(&json!({ "sql": "SELECT key || '/' || seq FROM seen" }))
        .send()
        .await
        .expect("query");
    let v: Value = r.json().await.expect("json");
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    let ids: HashSet<String> = rows
        .iter()
        .filter_map(|r| r[0].as_str().map(str::to_owned))
        .collect();
    (ids, rows.len() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_acknowledged() {
    let rounds = crate::soak_rounds();
    const PARTITIONS: i64 = 4;
    const BATCH: i64 = 50;
    let app = app("partitions = 4", "batch = { max = 50 }");
    let mut acked: Vec<String> = Vec::new();
    let mut seq = 0u64;
    for round in 0..rounds {
        let server = Server::start(bin(), app.path(), &[]);
        let base = server.base.clone();
        // Kill at a different moment each round, while requests are in flight.
        let kill_after = Duration::from_millis(300 + 400 * (round % 4) as u64);
        let started = Instant::now();
        let mut in_flight = Vec::new();
        while started.elapsed() < kill_after {
            let batch: Vec<(String, u64)> = (seq..seq + 100)
                .map(|i| (format!("dev-{}", i % 37), i))
                .collect();
            seq += 100;
            let body = lines(batch.clone());
            let url = format!("{base}/ingest");
            in_flight.push(tokio::spawn(async move {
                let r = client()
                    .post(url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => batch,
                    _ => Vec::new(),
                }
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.signal(libc::SIGKILL);
        for t in in_flight {
            let batch = t.await.expect("producer");
            acked.extend(batch.into_iter().map(|(k, s)| format!("{k}/{s}")));
        }
        drop(server);
    }
    let server = Server::start(bin(), app.path(), &[]);
    let want: HashSet<String> = acked.iter().cloned().collect();
    assert!(
        want.len() > 500,
        "too little was acknowledged to mean anything: {}",
        want.len()
    );
    let all_there = eventually(Duration::from_secs(120), async || {
        let (ids, _) = recorded(&server).await;
        want.is_subset(&ids)
    })
    .await;
    let (ids, rows) = recorded(&server).await;
    let lost = want.difference(&ids).count();
    let duplicates = rows - ids.len() as i64;
    println!(
        "stream kill -9 soak, {rounds} rounds: acknowledged {}, recorded {}, lost {lost}, duplicate deliveries {duplicates}",
        want.len(),
        ids.len()
    );
    assert!(all_there && lost == 0, "{lost} acknowledged events lost");
    // At most the batch in hand per partition per kill is delivered again.
    assert!(
        duplicates <= rounds as i64 * PARTITIONS * BATCH,
        "{duplicates} duplicates"
    );
}

/// A device simulator: one MQTT client publishing with QoS 1, counting the broker's
/// acknowledgements (what a device knows was accepted).
struct Devices {
    client: rumqttc::AsyncClient,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Devices {
    fn connect(port: u16) -> Self {
        use rumqttc::{Event, Packet};
        let mut options = rumqttc::MqttOptions::new("simulator", "127.0.0.1", port);
        options.set_clean_session(false).set_inflight(100);
        let (client, mut connection) = rumqttc::AsyncClient::new(options, 10_000);
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = acked.clone();
        let task = tokio::spawn(async move {
            loop {
                match connection.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self {
            client,
            acked,
            task,
        }
    }

    async fn publish(&self, device: &str, payload: String) {
        self.client
            .publish(
                format!("sensors/{device}/reading"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish");
    }

    async fn wait_acked(&self, n: usize) {
        let acked = &self.acked;
        let ok = eventually(Duration::from_secs(60), async || {
            acked.load(std::sync::atomic::Ordering::Relaxed) >= n
        })
        .await;
        assert!(
            ok,
            "the broker acknowledged {} of {n}",
            acked.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_readings_reach_the_stream_through_a_broker_restart() {
    let mut broker = updraft_test_support::Mosquitto::start();
    let app = AppDir::new(&format!(
        r#"
[app]
name = "telemetry"

[sql.app]

[stream.readings]
partitions = 4
key = "deviceid"

[[ingest.mqtt]]
broker = "{}"
topics = ["sensors/+/reading"]
device = 2
stream = "readings"

[function.streamer]
source = "streamer.wasm"
sql = ["app"]

[[trigger.stream]]
stream = "readings"
function = "streamer"
start = "earliest"
"#,
        broker.url()
    ));
    app.guest(guests::STREAMER, "streamer.wasm");
    let server = Server::start(bin(), app.path(), &[]);
    assert!(
        server
            .stdout
            .text()
            .contains("sensors/+/reading  ->  stream `readings`"),
        "{}",
        server.stdout.text()
    );
    // The bridge subscribes once connected; a message published before that is not for it.
    wait_subscribed(&broker, "updraft-telemetry-readings-0").await;
    let devices = Devices::connect(broker.port());
    let readings = |range: std::ops::Range<u64>| {
        range
            .map(|i| (format!("dev-{}", i % 50), i))
            .collect::<Vec<_>>()
    };
    for (device, seq) in readings(0..1_000) {
        devices
            .publish(&device, format!("{{\"key\":\"{device}\",\"seq\":{seq}}}"))
            .await;
    }
    devices.publish("dev-x", "not json {".to_owned()).await;
    devices.wait_acked(1_001).await;
    wait_seen(&server, 1_000, Duration::from_secs(60)).await;
    assert_eq!(
        numbers(&server, VIOLATIONS).await[0],
        0,
        "per-device order broke"
    );
    let by_partition = numbers(&server, "SELECT count(DISTINCT partition) FROM seen").await;
    assert_eq!(
        by_partition,
        [4],
        "devices spread over the partitions by their id"
    );
    // The malformed payload is dead-lettered with the reason; the bridge goes on.
    let (_, dlq, _) = cli(&server, &["streams", "dlq", "readings"]);
    assert!(
        dlq.contains("ingest.mqtt[0]") && dlq.contains("`sensors/dev-x/reading` is not JSON"),
        "{dlq}"
    );

    // The broker restarts mid-run; what it acknowledged to the devices still arrives.
    broker.restart().expect("restart mosquitto");
    for (device, seq) in readings(1_000..2_000) {
        devices
            .publish(&device, format!("{{\"key\":\"{device}\",\"seq\":{seq}}}"))
            .await;
    }
    devices.wait_acked(2_001).await;
    wait_seen(&server, 2_000, Duration::from_secs(90)).await;

    // updraft is killed mid-stream: what it had not stored, it had not acknowledged, so
    // the broker sends it again to the restarted bridge's session.
    let publishing = async {
        for (device, seq) in readings(2_000..3_000) {
            devices
                .publish(&device, format!("{{\"key\":\"{device}\",\"seq\":{seq}}}"))
                .await;
            if seq % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let killing = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        server.signal(libc::SIGKILL);
    };
    tokio::join!(publishing, killing);
    drop(server);
    devices.wait_acked(3_001).await;
    let server = Server::start(bin(), app.path(), &[]);
    wait_seen(&server, 3_000, Duration::from_secs(90)).await;
    let (ids, rows) = recorded(&server).await;
    let missing = (0..3_000u64)
        .filter(|i| !ids.contains(&format!("dev-{}/{i}", i % 50)))
        .count();
    println!(
        "mqtt through a broker restart and a kill -9 of updraft: 3000 acknowledged to devices, {} recorded, {missing} lost, {} duplicates",
        ids.len(),
        rows - ids.len() as i64
    );
    assert_eq!(missing, 0);
}

/// Runs `updraft simulate ARGS…` to completion; returns its stdout, failing on an error.
fn simulate(args: &[&str]) -> String {
    let mut all = vec!["simulate"];
    all.extend(args);
    let out = updraft_test_support::run(bin(), &all, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "simulate failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_telemetry_example_turns_device_readings_into_minutes_alerts_and_a_dashboard() {
    let broker = updraft_test_support::Mosquitto::start();
    let dir = crate::copy_example("iot-telemetry");
    let manifest = dir.path().join("updraft.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("mqtt://127.0.0.1:1883"));
    std::fs::write(
        &manifest,
        text.replace("mqtt://127.0.0.1:1883", &broker.url()),
    )
    .unwrap();
    let server = Server::start(bin(), dir.path(), &[]);
    wait_subscribed(&broker, "updraft-iot-telemetry-readings-0").await;
    // 50 devices, three simulated minutes of one reading a second each, every 500th a
    // spike over the 40 °C threshold; half over MQTT, half through the HTTP route.
    let mqtt = simulate(&[
        "--mqtt",
        &broker.url(),
        "--devices",
        "50",
        "--rounds",
        "90",
        "--rate",
        "0",
        "--start",
        "2026-01-05T10:00:00Z",
        "--step",
        "1s",
        "--spike-every",
        "500",
    ]);
    assert!(
        mqtt.contains("sent 4500 readings from 50 devices") && mqtt.contains("4500 acknowledged"),
        "{mqtt}"
    );
    // The broker acknowledged those; the bridge stores them a moment later. Wait for that,
    // or the later HTTP readings could close a minute before its MQTT readings are counted
    // (they would be late, and rightly not counted).
    let stored = eventually(Duration::from_secs(60), async || {
        streams(&server).await[0]["events"] == 4_500
    })
    .await;
    assert!(stored, "{}", streams(&server).await);
    let http = simulate(&[
        "--http",
        &server.url("/ingest"),
        "--devices",
        "50",
        "--rounds",
        "90",
        "--rate",
        "0",
        "--start",
        "2026-01-05T10:01:30Z",
        "--step",
        "1s",
        "--spike-every",
        "500",
    ]);
    assert!(http.contains("4500 acknowledged"), "{http}");
    // Two minutes close by event time; the last one when the quiet partitions tick (the
    // simulated day is in the past, so the wall clock has passed its end).
    let query = async |sql: &str| -> Value {
        let r = client()
            .post(server.url("/_updraft/api/v1/sql/telemetry/query"))
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["rows"].clone()
    };
    let minutes = eventually(Duration::from_secs(90), async || {
        query("SELECT count(*) FROM device_minutes").await[0][0] == 150
    })
    .await;
    assert!(
        minutes,
        "device_minutes: {}; stderr:\n{}",
        query("SELECT count(*) FROM device_minutes").await,
        server.stderr.text()
    );
    let rows = query("SELECT sum(readings), min(readings), max(readings), count(DISTINCT minute) FROM device_minutes").await;
    assert_eq!(
        rows[0],
        json!([9000, 60, 60, 3]),
        "every reading counted once, 60 per device-minute"
    );
    assert_eq!(
        query("SELECT minute FROM device_minutes GROUP BY minute ORDER BY minute").await,
        json!([
            ["2026-01-05T10:00:00Z"],
            ["2026-01-05T10:01:00Z"],
            ["2026-01-05T10:02:00Z"]
        ])
    );
    let alerts = eventually(Duration::from_secs(30), async || {
        query("SELECT count(*) FROM alerts").await[0][0] == 18
    })
    .await;
    assert!(
        alerts,
        "alerts: {}",
        query("SELECT count(*) FROM alerts").await
    );
    assert_eq!(query("SELECT count(*) FROM rejected").await[0][0], 0);
    // The app's dashboard charts the table; the operator's page shows the lag.
    let (status, page) = crate::get(&server, "/reports").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Average temperature per minute") && page.contains("<svg"),
        "{page}"
    );
    assert!(
        page.contains("dev-00"),
        "the hottest devices table has rows"
    );
    let (status, page) = crate::get(&server, "/_updraft/apps/iot-telemetry/streams").await;
    assert_eq!(status, 200);
    assert!(page.contains("16 partitions · 9000 events kept"), "{page}");
    assert!(
        page.contains("Consumer <code>telemetry</code>: lag 0"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_route_with_auth_takes_only_keyed_requests() {
    let app = AppDir::new(
        r#"
[app]
name = "telemetry"

[stream.readings]
key = "data.key"

[gateway.auth.devices]
type = "api-key"

[[ingest.http]]
route = "/ingest"
stream = "readings"
auth = ["devices"]
"#,
    );
    let server = Server::start(bin(), app.path(), &[]);
    let body = lines((0..10).map(|i| (format!("k{i}"), i)));
    let (status, reply) = ingest(&server, body.clone()).await;
    assert_eq!(status, 401, "{reply}");
    let (code, key, err) = cli(
        &server,
        &[
            "keys",
            "create",
            "--name",
            "sensor-1",
            "--route",
            "ingest:/ingest",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = client()
        .post(server.url("/ingest"))
        .header("x-api-key", key.trim())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(streams(&server).await[0]["events"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_append_to_the_streams_they_list() {
    let app = AppDir::new(
        r#"
[app]
name = "telemetry"

[sql.app]

[stream.readings]
key = "data.key"

[stream.archive]
key = "data.key"

[stream.secret]

[[ingest.http]]
route = "/ingest"
stream = "readings"

[function.streamer]
source = "streamer.wasm"
sql = ["app"]
append = ["archive"]

[[trigger.stream]]
stream = "readings"
function = "streamer"
start = "earliest"
max_attempts = 1

[[trigger.stream]]
stream = "archive"
function = "streamer"
consumer = "archiver"
start = "earliest"
"#,
    );
    app.guest(guests::STREAMER, "streamer.wasm");
    let server = Server::start(bin(), app.path(), &[]);
    let body: String = (0..10)
        .map(|i| {
            format!(
                "{{\"key\":\"k{}\",\"seq\":{i},\"copy_to\":\"archive\"}}\n",
                i % 3
            )
        })
        .collect();
    assert_eq!(ingest(&server, body).await.0, 200);
    // Each reading once from `readings`, and its copy once from `archive`.
    wait_seen(&server, 20, Duration::from_secs(60)).await;
    let counts = numbers(&server, "SELECT count(*), count(DISTINCT seq) FROM seen").await;
    assert_eq!(counts, [20, 10]);
    let info = streams(&server).await;
    let archive = info
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "archive")
        .unwrap();
    assert_eq!(archive["events"], 10, "{archive}");
    // A stream the function does not list, and one nobody declared: refused, with the fix.
    let body = "{\"key\":\"x\",\"seq\":100,\"copy_to\":\"secret\"}\n{\"key\":\"y\",\"seq\":101,\"copy_to\":\"nowhere\"}\n";
    assert_eq!(ingest(&server, body.to_owned()).await.0, 200);
    let dead = eventually(Duration::from_secs(60), async || {
        let (_, out, _) = cli(&server, &["streams", "dlq", "readings", "--output", "json"]);
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(2)
    })
    .await;
    let (_, out, _) = cli(&server, &["streams", "dlq", "readings"]);
    assert!(dead, "{out}");
    assert!(
        out.contains("may not append to `secret`; add it to the function's `append = [...]`"),
        "{out}"
    );
    assert!(out.contains("stream `nowhere` is not declared"), "{out}");
}

/// A burst as fast as the broker takes it: the bridge must keep acknowledging while it
/// stores (an earlier bridge stopped for good when its acknowledgements queued up behind
/// the messages still arriving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_burst_is_stored_whole() {
    let broker = updraft_test_support::Mosquitto::start();
    let app = AppDir::new(&format!(
        r#"
[app]
name = "burst"

[stream.readings]
partitions = 16
key = "data.device"

[[ingest.mqtt]]
broker = "{}"
topics = ["sensors/+/reading"]
stream = "readings"
"#,
        broker.url()
    ));
    let server = Server::start(bin(), app.path(), &[]);
    wait_subscribed(&broker, "updraft-burst-readings-0").await;
    let out = simulate(&[
        "--mqtt",
        &broker.url(),
        "--devices",
        "1000",
        "--rounds",
        "30",
        "--rate",
        "0",
    ]);
    assert!(out.contains("30000 acknowledged"), "{out}");
    let stored = eventually(Duration::from_secs(60), async || {
        streams(&server).await[0]["events"] == 30_000
    })
    .await;
    assert!(
        stored,
        "stored {} of 30000",
        streams(&server).await[0]["events"]
    );
}

/// Rows `key/seq` in a stopped node's `seen` table, read from its file.
fn seen_in_file(app: &AppDir) -> Vec<String> {
    let path = app.path().join(".updraft/sql/app.db");
    let Ok(db) = rusqlite::Connection::open(path) else {
        return Vec::new();
    };
    let Ok(mut stmt) = db.prepare("SELECT key || '/' || seq FROM seen") else {
        return Vec::new();
    };
    stmt.query_map([], |r| r.get::<_, String>(0))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_nats_share_a_stream_and_one_takes_over_when_the_other_dies() {
    let nats = updraft_test_support::NatsServer::start();
    let start = |app: &AppDir| Server::start(bin(), app.path(), &["--store", &nats.url()]);
    let (app_a, app_b) = (
        app("partitions = 4", "batch = { max = 50 }"),
        app("partitions = 4", "batch = { max = 50 }"),
    );
    let a = start(&app_a);
    let b = start(&app_b);
    // Readings sent to either node land in the shared stream; each partition is processed
    // by one node at a time, in order.
    let first: Vec<(String, u64)> = (0..2_000).map(|i| (format!("dev-{}", i % 40), i)).collect();
    for chunk in first.chunks(500) {
        let (status, reply) = ingest(&b, lines(chunk.iter().cloned())).await;
        assert_eq!(status, 200, "{reply}");
    }
    let both = eventually(Duration::from_secs(60), async || {
        seen(&a).await + seen(&b).await >= 2_000
    })
    .await;
    assert!(
        both,
        "a {} + b {} of 2000; a:\n{}",
        seen(&a).await,
        seen(&b).await,
        a.stderr.text()
    );
    assert_eq!(
        seen(&a).await + seen(&b).await,
        2_000,
        "no event ran on both nodes"
    );
    assert_eq!(
        numbers(&a, VIOLATIONS).await.first().copied().unwrap_or(0),
        0
    );
    assert_eq!(
        numbers(&b, VIOLATIONS).await.first().copied().unwrap_or(0),
        0
    );
    let info = streams(&b).await;
    assert_eq!(info[0]["events"], 2_000, "{info}");
    assert_eq!(info[0]["consumers"][0]["lag"], 0, "{info}");

    // The node holding partitions dies; the other takes them over once their claims lapse.
    let (on_a, on_b) = (seen(&a).await, seen(&b).await);
    let (dying, survivor, dead_app) = if on_a >= on_b {
        (a, b, &app_a)
    } else {
        (b, a, &app_b)
    };
    dying.signal(libc::SIGKILL);
    drop(dying);
    let second: Vec<(String, u64)> = (2_000..3_000)
        .map(|i| (format!("dev-{}", i % 40), i))
        .collect();
    let (status, reply) = ingest(&survivor, lines(second)).await;
    assert_eq!(status, 200, "{reply}");
    let want: HashSet<String> = (0..3_000u64)
        .map(|i| format!("dev-{}/{i}", i % 40))
        .collect();
    let mut got = HashSet::new();
    let complete = eventually(Duration::from_secs(90), async || {
        let (ids, _) = recorded(&survivor).await;
        got = ids;
        got.extend(seen_in_file(dead_app));
        want.is_subset(&got)
    })
    .await;
    assert!(
        complete,
        "{} of 3000 processed after the takeover; survivor:\n{}",
        want.intersection(&got).count(),
        survivor.stderr.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtts_broker_is_bridged_when_its_certificate_is_trusted() {
    let broker = updraft_test_support::Mosquitto::start_with_tls();
    let tls_url = broker.tls_url().unwrap();
    let manifest = |app: &str, ca: &str| {
        format!(
            r#"
[app]
name = "{app}"

[stream.readings]
key = "data.device"

[[ingest.mqtt]]
broker = "{tls_url}"
topics = ["sensors/+/reading"]
stream = "readings"
{ca}
"#
        )
    };
    // The broker's certificate is self-signed: without `ca` the bridge refuses it, says so,
    // and keeps trying.
    let untrusted = AppDir::new(&manifest("untrusted", ""));
    let server = Server::start(bin(), untrusted.path(), &[]);
    crate::stderr_shows(&server, "lost the broker 127.0.0.1").await;
    let err = server.stderr.text();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    drop(server);
    // With the certificate trusted, readings published on the broker's plain listener reach
    // the stream over TLS.
    let app = AppDir::new(&manifest("trusted", "ca = \"broker.pem\""));
    std::fs::copy(broker.certificate(), app.path().join("broker.pem")).unwrap();
    let server = Server::start(bin(), app.path(), &[]);
    wait_subscribed(&broker, "updraft-trusted-readings-0").await;
    let out = simulate(&[
        "--mqtt",
        &broker.url(),
        "--devices",
        "10",
        "--rounds",
        "10",
        "--rate",
        "0",
    ]);
    assert!(out.contains("100 acknowledged"), "{out}");
    let stored = eventually(Duration::from_secs(30), async || {
        streams(&server).await[0]["events"] == 100
    })
    .await;
    assert!(stored, "{}", streams(&server).await);
}
