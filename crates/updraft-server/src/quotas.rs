//! Daily gateway quotas ([`updraft_gateway::policy::quota`]) counted in a kv namespace of
//! the node's state: on SQLite they survive a restart, on NATS every node shares them.

use std::sync::Arc;

use updraft_gateway::policy::quota::QuotaStore;

/// The kv namespace the counts live in.
pub(crate) const QUOTAS_NAMESPACE: &str = "gateway-quotas";
/// Keys dropped per day change at most (a page of listing each), so a clean-up stays short.
const MAX_PAGES: usize = 100;
const PAGE: u32 = 1000;

/// Counts as kv integers under `<yyyy-mm-dd>/<label>/<subject>`.
pub(crate) struct KvQuotas(pub(crate) Arc<dyn updraft_store::KvStore>);

#[async_trait::async_trait]
impl QuotaStore for KvQuotas {
    async fn add(&self, key: &str, delta: i64) -> Result<i64, String> {
        self.0
            .increment(key, delta)
            .await
            .map_err(|e| e.to_string())
    }

    async fn forget_before(&self, day: &str) -> Result<(), String> {
        // Keys start with their date, so the past comes first in key order.
        for _ in 0..MAX_PAGES {
            let page = self
                .0
                .list("", None, PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let old: Vec<String> = page
                .keys
                .into_iter()
                .take_while(|k| k.as_str() < day)
                .collect();
            if old.is_empty() {
                return Ok(());
            }
            self.0.delete_many(&old).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
