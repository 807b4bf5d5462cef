//! Topics: fan-out to filtered subscriptions, CloudEvents over HTTP in three modes, dedup by
//! event id, replay.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use updraft_test_support::{AppDir, Server};

use crate::{client, get, start};

const APP: &str = r#"
[app]
name = "orders"

[kv.default]

[topic.orders]
max_attempts = 2
backoff = "100ms"

[function.kitchen]
source = "kitchen.wasm"
kv = ["default"]
publish = ["orders"]

[function.all]
source = "worker.wasm"
kv = ["default"]

[function.eu]
source = "worker.wasm"
kv = ["default"]

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.topic]]
topic = "orders"
function = "all"

[[trigger.topic]]
topic = "orders"
subscription = "eu-orders"
filter = { type = "order.", subject_prefix = "eu/" }
function = "eu"
"#;

fn app() -> AppDir {
    crate::kitchen_and_worker(APP)
}

async fn handled(server: &Server, function: &str) -> usize {
    let r: Value = client()
        .get(server.url(&format!(
            "/_updraft/api/v1/invocations?function={function}&limit=1000"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r.as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "ok")
        .count()
}

async fn wait_handled(server: &Server, function: &str, n: usize) -> usize {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let got = handled(server, function).await;
        if got >= n || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish_ce(
    server: &Server,
    content_type: &str,
    body: String,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = client()
        .post(server.url("/_updraft/api/v1/topics/orders/events"))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn published_events_reach_every_matching_subscription() {
    let app = app();
    let server = start(&app);
    // From a function.
    for (id, ty, subject) in [
        ("o1", "order.created", "eu/de"),
        ("o2", "order.created", "us/ny"),
        ("o3", "invoice.sent", "eu/fr"),
    ] {
        let (s, body) = get(
            &server,
            &format!("/k/publish?topic=orders&id={id}&type={ty}&subject={subject}"),
        )
        .await;
        assert_eq!(s, 202, "{body}");
    }
    // Over HTTP: structured, binary and batch.
    let ce = |id: &str, subject: &str| json!({"specversion": "1.0", "id": id, "source": "/test", "type": "order.paid", "subject": subject, "data": {"n": 1}});
    let (s, v) = publish_ce(
        &server,
        "application/cloudevents+json",
        ce("h1", "eu/it").to_string(),
        &[],
    )
    .await;
    assert_eq!((s, v["published"].as_u64()), (202, Some(1)), "{v}");
    let (s, _) = publish_ce(
        &server,
        "text/plain",
        "binary body".into(),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "h2"),
            ("ce-source", "/test"),
            ("ce-type", "order.paid"),
            ("ce-subject", "us/tx"),
        ],
    )
    .await;
    assert_eq!(s, 202);
    let batch = json!([ce("h3", "eu/es"), ce("h4", "eu/pt"), ce("h1", "eu/it")]).to_string();
    let (s, v) = publish_ce(&server, "application/cloudevents-batch+json", batch, &[]).await;
    assert_eq!(s, 202);
    assert_eq!(
        (v["published"].as_u64(), v["duplicates"].as_u64()),
        (Some(2), Some(1)),
        "h1 again is a duplicate: {v}"
    );
    // 7 distinct events: `all` gets every one, `eu-orders` the `order.*` ones about `eu/`.
    assert_eq!(wait_handled(&server, "all", 7).await, 7);
    assert_eq!(wait_handled(&server, "eu", 4).await, 4, "o1, h1, h3, h4");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (handled(&server, "all").await, handled(&server, "eu").await),
        (7, 4),
        "nothing twice"
    );
    let (_, topics) = get(&server, "/_updraft/api/v1/topics").await;
    assert!(
        topics.contains(r#""queue":"orders.eu-orders""#) && topics.contains(r#""type":"order.""#),
        "{topics}"
    );

    // Replay the filtered subscription from the start: its 4 events come again.
    let r: Value =
        client()
            .post(server.url(
                "/_updraft/api/v1/topics/orders/replay?subscription=eu-orders&from_position=0",
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(r["replayed"], 4, "{r}");
    assert_eq!(wait_handled(&server, "eu", 8).await, 8);
    assert_eq!(
        handled(&server, "all").await,
        7,
        "replay touches only that subscription"
    );
}

#[tokio::test]
async fn malformed_cloudevents_and_unknown_topics_are_refused_clearly() {
    let app = app();
    let server = start(&app);
    let (s, v) = publish_ce(
        &server,
        "application/cloudevents+json",
        r#"{"specversion":"1.0","id":"x","source":"/s"}"#.into(),
        &[],
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("missing the required attribute `type`"),
        "{v}"
    );
    let (s, v) = publish_ce(
        &server,
        "text/plain",
        "x".into(),
        &[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")],
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("`source`"), "{v}");
    let r = client()
        .post(server.url("/_updraft/api/v1/topics/nope/events"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("topic `nope` is not declared")
    );
    let (s, body) = get(&server, "/k/publish?topic=nope&type=t").await;
    assert_eq!(s, 400);
    assert!(body.contains("NoSuchTopic"), "{body}");
    let big = "x".repeat((1 << 20) + 10);
    let (s, v) = publish_ce(
        &server,
        "text/plain",
        big,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "big"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ],
    )
    .await;
    assert_eq!(s, 413, "{v}");
    // Events that break the CloudEvents spec are refused, naming the attribute and the rule.
    let base = r#""specversion":"1.0","source":"/s","type":"order.t""#;
    for (body, needle) in [
        (format!(r#"{{{base},"id":42}}"#), "`id` must be a string"),
        (
            format!(r#"{{{base},"id":"1","time":"lunchtime"}}"#),
            "`time` `lunchtime` is not an RFC 3339",
        ),
        (
            format!(r#"{{{base},"id":"1","data":"x","data_base64":"eA=="}}"#),
            "both `data` and `data_base64`",
        ),
        (
            format!(r#"{{{base},"id":"1","Bad_Name":"x"}}"#),
            "`Bad_Name` is not a valid extension",
        ),
    ] {
        let (s, v) = publish_ce(&server, "application/cloudevents+json", body.clone(), &[]).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let (s, v) = publish_ce(
        &server,
        "text/plain",
        "x".into(),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-time", "lunchtime"),
        ],
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("`ce-time`"), "{v}");
    // A batch with one bad event is refused whole: its good event is not in the log.
    let batch = format!(r#"[{{{base},"id":"good"}},{{{base},"id":7}}]"#);
    let (s, v) = publish_ce(&server, "application/cloudevents-batch+json", batch, &[]).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("event #1"), "{v}");
    let replayed: Value = client()
        .post(server.url("/_updraft/api/v1/topics/orders/replay?subscription=all&from_position=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["replayed"], 0, "nothing was published: {replayed}");
    let r = client()
        .post(
            server.url("/_updraft/api/v1/topics/orders/replay?subscription=ghost&from_position=0"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_cli_publishes_and_replays() {
    let app = app();
    let server = start(&app);
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", server.base.as_str()]);
        let out = updraft_test_support::run(crate::bin(), &all, Duration::from_secs(30));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&[
        "events",
        "publish",
        "orders",
        "--type",
        "order.created",
        "--subject",
        "eu/nl",
        "--id",
        "c1",
        "--data",
        r#"{"a":1}"#,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("published 1"), "{out}");
    let (_, out, _) = cli(&[
        "events",
        "publish",
        "orders",
        "--type",
        "order.created",
        "--id",
        "c1",
        "--output",
        "json",
    ]);
    assert!(out.contains(r#""duplicates": 1"#), "{out}");
    assert_eq!(wait_handled(&server, "eu", 1).await, 1);
    let (code, out, err) = cli(&[
        "events",
        "replay",
        "orders",
        "--subscription",
        "eu-orders",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("replayed 1"), "{out}");
    assert_eq!(wait_handled(&server, "eu", 2).await, 2);
    let (code, _, err) = cli(&["events", "replay", "orders", "--subscription", "eu-orders"]);
    assert_eq!(
        code,
        Some(2),
        "clap refuses a replay without a start: {err}"
    );
}
