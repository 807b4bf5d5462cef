//! `ScheduleStore` on the KV bucket `updraft-<ns>-schedules`.
//!
//! A claim is a KV `create` of `<trigger>.<occurrence>` (the trigger's name escaped like a kv
//! key, so it is one subject token), holding the claimant: JetStream lets exactly one
//! `create` of a key succeed. After a successful claim, `<trigger>` is raised to the
//! occurrence by compare-and-swap (never lowered), so `last_claimed` is one read and stays
//! right however claims race. If a node dies between the two writes, `last_claimed` lags
//! until the trigger's next claim; the claim itself still stops a second run.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;

use super::kv::MAX_CAS_ATTEMPTS;
use super::names::escape_key;
use super::{Inner, backend};
use crate::StoreError;
use crate::schedule::ScheduleStore;

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
        Err(StoreError::Backend(format!(
            "the last claim of cron trigger `{trigger}` changed {MAX_CAS_ATTEMPTS} times while recording it"
        )))
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
                return Err(backend(
                    format_args!(
                        "cannot claim occurrence {occurrence_us} of cron trigger `{trigger}`"
                    ),
                    e,
                ));
            }
        }
        self.raise_last(trigger, occurrence_us).await?;
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
}
