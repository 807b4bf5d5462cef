//! `ScheduleStore` on the KV bucket `updraft-<ns>-schedules`.
//!
//! A claim is a KV `create` of `<trigger>.<occurrence>` (the trigger's name escaped like a kv
//! key, so it is one subject token), holding the claimant: JetStream lets exactly one
//! `create` of a key succeed. After a successful claim, `<trigger>` is raised to the
//! occurrence by compare-and-swap (never lowered), so `last_claimed` is one read and stays
//! right however claims race. If a node dies between the two writes, `last_claimed` lags
//! until the trigger's next claim; the claim itself still stops a second run.
//!
//! `prune(before)` lists the bucket's keys, and for each trigger purges (from the bucket's
//! stream, so no delete marker stays behind) the claims of occurrences before `before`
//! except its latest claim and the one `<trigger>` names; at most [`MAX_PRUNE`] claims per
//! call, within [`PRUNE_TIME`] (the rest goes on the next call).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::kv::MAX_CAS_ATTEMPTS;
use super::names::escape_key;
use super::{Inner, backend};
use crate::StoreError;
use crate::schedule::ScheduleStore;

/// Most claims one `prune` removes (the rest go on the next call).
const MAX_PRUNE: usize = 100_000;
/// Most keys one `prune` reads.
const MAX_PRUNE_SCAN: usize = 2_000_000;
/// How long one `prune` may take, listing and removing together.
const PRUNE_TIME: Duration = Duration::from_secs(60);

/// Cron claims in a JetStream KV bucket.
#[derive(Clone)]
pub struct NatsSchedules {
    store: Store,
    _inner: Arc<Inner>,
}

impl NatsSchedules {
    pub(crate) async fn open(inner: Arc<Inner>) -> Result<Self, StoreError> {
        let store = inner
            .bucket(inner.name("schedules"), Duration::ZERO)
            .await?;
        Ok(Self {
            store,
            _inner: inner,
        })
    }

    /// Raises `<trigger>` to `occurrence_us` unless it is already at or above it.
    async fn raise_last(&self, trigger: &str, occurrence_us: i64) -> Result<(), StoreError> {
        let key = escape_key(trigger);
        let failed = |e: &dyn std::fmt::Display| {
            backend(
                format_args!("cannot record the last claim of cron trigger `{trigger}`"),
                e,
            )
        };
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self
                .store
                .entry(key.as_str())
                .await
                .map_err(|e| failed(&e))?;
            let revision = match entry {
                Some(e) if e.operation == Operation::Put => {
                    if parse(&e.value).is_some_and(|last| last >= occurrence_us) {
                        return Ok(());
                    }
                    e.revision
                }
                Some(e) => e.revision,
                None => 0,
            };
            let value = Bytes::from(occurrence_us.to_string());
            match self.store.update(key.as_str(), value, revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(failed(&e)),
            }
        }
        Err(StoreError::Conflict(format!(
            "the last claim of cron trigger `{trigger}` changed {MAX_CAS_ATTEMPTS} times while recording it"
        )))
    }
}

impl NatsSchedules {
    /// The claimed occurrences of each (escaped) trigger; bounded by [`MAX_PRUNE_SCAN`] keys
    /// and `deadline`.
    async fn list_claims(
        &self,
        deadline: Instant,
    ) -> Result<HashMap<String, Vec<i64>>, StoreError> {
        let failed = |e: &dyn std::fmt::Display| backend("cannot list the cron claims", e);
        let listing = async {
            let mut claims: HashMap<String, Vec<i64>> = HashMap::new();
            let mut keys = self.store.keys().await.map_err(|e| failed(&e))?;
            let mut read = 0usize;
            while let Some(key) = keys.next().await {
                let key = key.map_err(|e| failed(&e))?;
                read += 1;
                // `<trigger>.<occurrence>` is a claim; `<trigger>` alone holds the latest.
                if let Some((trigger, occurrence)) = key.split_once('.')
                    && let Ok(occurrence) = occurrence.parse::<i64>()
                {
                    claims
                        .entry(trigger.to_owned())
                        .or_default()
                        .push(occurrence);
                }
                if read >= MAX_PRUNE_SCAN {
                    tracing::warn!(
                        keys = read,
                        "pruning cron claims: stopped listing at the limit; the rest waits for the next prune"
                    );
                    break;
                }
            }
            Ok::<_, StoreError>(claims)
        };
        tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), listing)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("listing the cron claims took over {PRUNE_TIME:?}"))
            })?
    }
}

fn parse(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[async_trait]
impl ScheduleStore for NatsSchedules {
    async fn claim(
        &self,
        trigger: &str,
        occurrence_us: i64,
        claimant: &str,
    ) -> Result<bool, StoreError> {
        let key = format!("{}.{occurrence_us}", escape_key(trigger));
        match self
            .store
            .create(key.as_str(), Bytes::copy_from_slice(claimant.as_bytes()))
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => return Ok(false),
            Err(e) => {
                // The create may have landed with only its reply lost: if the stored claim
                // is ours, we hold it.
                let ours = matches!(
                    self.store.get(key.as_str()).await,
                    Ok(Some(v)) if v.as_ref() == claimant.as_bytes()
                );
                if !ours {
                    return Err(backend(
                        format_args!(
                            "cannot claim occurrence {occurrence_us} of cron trigger `{trigger}`"
                        ),
                        e,
                    ));
                }
            }
        }
        // The claim is ours whatever happens next: a lagging `last` only means a restart
        // may queue this occurrence again, which its idempotency key makes harmless.
        if let Err(e) = self.raise_last(trigger, occurrence_us).await {
            tracing::warn!(
                trigger,
                occurrence_us,
                "cannot record the latest cron claim: {e}"
            );
        }
        Ok(true)
    }

    async fn last_claimed(&self, trigger: &str) -> Result<Option<i64>, StoreError> {
        let value = self.store.get(escape_key(trigger)).await.map_err(|e| {
            backend(
                format_args!("cannot read the last claim of cron trigger `{trigger}`"),
                e,
            )
        })?;
        Ok(value.as_deref().and_then(parse))
    }

    async fn prune(&self, before_us: i64) -> Result<u64, StoreError> {
        let deadline = Instant::now() + PRUNE_TIME;
        let claims = self.list_claims(deadline).await?;
        let mut doomed = Vec::new();
        for (trigger, mut occurrences) in claims {
            occurrences.sort_unstable();
            let Some(&latest) = occurrences.last() else {
                continue;
            };
            // `<trigger>` may lag its latest claim (see the module doc): keep what it names too.
            let named = match self.store.get(trigger.as_str()).await {
                Ok(v) => v.as_deref().and_then(parse),
                Err(e) => {
                    return Err(backend(
                        "cannot read the last claim of a cron trigger while pruning",
                        e,
                    ));
                }
            };
            doomed.extend(
                occurrences
                    .into_iter()
                    .filter(|&o| o < before_us && o < latest && Some(o) != named)
                    .map(|o| format!("{trigger}.{o}")),
            );
            if doomed.len() >= MAX_PRUNE || Instant::now() >= deadline {
                break;
            }
        }
        doomed.truncate(MAX_PRUNE);
        let mut removed = 0u64;
        for key in doomed {
            if Instant::now() >= deadline {
                tracing::debug!(
                    removed,
                    "pruning cron claims took its time; the rest waits for the next prune"
                );
                break;
            }
            // A purge of the key's subject leaves no marker behind (a kv delete would).
            let subject = format!("{}{key}", self.store.prefix);
            let purged = self
                .store
                .stream
                .purge()
                .filter(subject)
                .await
                .map_err(|e| backend(format_args!("cannot remove the cron claim `{key}`"), e))?;
            removed += purged.purged.min(1);
        }
        Ok(removed)
    }
}
