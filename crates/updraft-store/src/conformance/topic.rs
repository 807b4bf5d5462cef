//! What every [`TopicStore`] must do, with the [`QueueStore`] its subscriptions deliver
//! through. On the real clock, like the queue suite.

use std::sync::Arc;
use std::time::Duration;

use super::queue::now_us;
use crate::queue::{Event, QueueStore};
use crate::topic::{ReplayFrom, Subscription, TopicStore};

const SEC: i64 = 1_000_000;

fn event(id: &str, ty: &str, subject: Option<&str>) -> Event {
    Event {
        id: id.into(),
        source: "/orders".into(),
        ty: ty.into(),
        subject: subject.map(str::to_owned),
        data: id.as_bytes().to_vec(),
        ..Event::default()
    }
}

fn sub(queue: &str, ty: Option<&str>, subject: Option<&str>) -> Subscription {
    Subscription {
        queue: queue.into(),
        type_filter: ty.map(str::to_owned),
        subject_prefix: subject.map(str::to_owned),
    }
}

async fn drain(queues: &dyn QueueStore, queue: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for m in queues
        .lease(queue, 100, 60 * SEC, now_us())
        .await
        .expect("lease")
    {
        assert!(queues.ack(queue, &m.id, &m.token).await.expect("ack"));
        ids.push(m.event.id);
    }
    ids
}

/// Runs the suite.
pub async fn run(topics: Arc<dyn TopicStore>, queues: Arc<dyn QueueStore>) {
    let subs = [
        sub("orders.all", None, None),
        sub("orders.created", Some("order.created"), None),
        sub("orders.order-prefix", Some("order."), Some("eu/")),
    ];
    let published = [
        event("1", "order.created", Some("eu/de")),
        event("2", "order.paid", Some("us/ca")),
        event("3", "order.created", Some("us/ny")),
        event("4", "invoice.sent", Some("eu/fr")),
    ];
    let mut positions = Vec::new();
    // Entries appended from `middle` on are the last two: the log's clock may be the
    // server's, so leave a little room on either side of it.
    let mut middle = 0;
    for (i, e) in published.iter().enumerate() {
        if i == 2 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            middle = now_us();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let p = topics
            .publish("orders", e.clone(), &subs, 600 * SEC, now_us())
            .await
            .expect("publish")
            .expect("a new id");
        positions.push(p);
    }
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions increase"
    );
    // Fan-out with filters: type exact, type prefix ending in `.`, subject prefix.
    assert_eq!(drain(&*queues, "orders.all").await, ["1", "2", "3", "4"]);
    assert_eq!(drain(&*queues, "orders.created").await, ["1", "3"]);
    assert_eq!(drain(&*queues, "orders.order-prefix").await, ["1"]);
    // The same id within the window is stored once; after it, again.
    let dup = topics
        .publish(
            "orders",
            event("1", "order.created", None),
            &subs,
            600 * SEC,
            now_us(),
        )
        .await;
    assert_eq!(dup.expect("dup"), None);
    let mut other_source = event("1", "invoice.sent", None);
    other_source.source = "/billing".into();
    let p = topics
        .publish("orders", other_source, &[], 600 * SEC, now_us())
        .await;
    assert!(
        p.expect("other source").is_some(),
        "ids are unique per source"
    );
    assert!(drain(&*queues, "orders.all").await.is_empty());
    // The log reads in order, from a position.
    let log = topics.read("orders", positions[1], 2).await.expect("read");
    assert_eq!(
        log.iter().map(|e| e.event.id.as_str()).collect::<Vec<_>>(),
        ["3", "4"]
    );
    assert_eq!(log[0].event, published[2]);
    assert!(
        log[0].appended_us >= middle - SEC / 100,
        "appended after `middle`"
    );
    let everything = topics.read("orders", 0, 100).await.expect("read all");
    assert_eq!(everything.len(), 5);
    assert!(everything.windows(2).all(|w| w[0].position < w[1].position));
    // Replay from a position or a time, through the subscription's filter.
    let n = topics
        .replay(
            "orders",
            &subs[1],
            ReplayFrom::Position(positions[0]),
            now_us(),
        )
        .await
        .expect("replay");
    assert_eq!(n, 2);
    assert_eq!(drain(&*queues, "orders.created").await, ["1", "3"]);
    let n = topics
        .replay("orders", &subs[0], ReplayFrom::Time(middle), now_us())
        .await
        .expect("replay by time");
    assert_eq!(n, 3, "3, 4, and the other source's 1");
    assert_eq!(drain(&*queues, "orders.all").await, ["3", "4", "1"]);
    assert!(
        topics.read("other", 0, 10).await.expect("read").is_empty(),
        "topics are separate"
    );
}
