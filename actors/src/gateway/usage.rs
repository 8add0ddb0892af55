//! Usage records leave the request path through a [`UsageSink`] (a sum
//! under a short lock, no store write, no mailbox); the [`UsageActor`]
//! writes them to the store in batches every `flush_every`.

use crate::error::GatehouseError;
use crate::model::UsageRecord;
use crate::store::SharedStore;
use actix::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Records waiting beyond this are dropped (and counted): a store that is
/// down must not grow memory without bound.
const MAX_PENDING: usize = 100_000;

/// What makes calls fold into one record: their minute and who, how and
/// with what result they called.
#[derive(Hash, PartialEq, Eq)]
struct Key {
    minute: i64,
    user_id: String,
    username: String,
    token_id: Option<String>,
    provider: String,
    model: String,
    status: u16,
}

/// The sums of the calls of one key.
#[derive(Default)]
struct Sums {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    latency_ms: u64,
    cost: f64,
}

/// Where calls leave their usage. Calls of the same minute, user, token,
/// provider, model and status fold into one record, so what the store
/// writes grows with the variety of the traffic, not its volume.
#[derive(Clone, Default)]
pub struct UsageSink {
    pending: Arc<Mutex<foldhash::HashMap<Key, Sums>>>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink {
    pub fn record(&self, r: UsageRecord) {
        let key = Key {
            minute: r.at.unix_timestamp().div_euclid(60),
            user_id: r.user_id,
            username: r.username,
            token_id: r.token_id,
            provider: r.provider,
            model: r.model,
            status: r.status,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
            drop(pending);
            self.dropped.fetch_add(r.requests, Ordering::Relaxed);
            return;
        }
        let sums = pending.entry(key).or_default();
        sums.requests = sums.requests.saturating_add(r.requests);
        sums.prompt_tokens = sums.prompt_tokens.saturating_add(r.prompt_tokens);
        sums.completion_tokens = sums.completion_tokens.saturating_add(r.completion_tokens);
        sums.latency_ms = sums.latency_ms.saturating_add(r.latency_ms);
        sums.cost += r.cost;
    }

    fn take(&self) -> Vec<UsageRecord> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        pending
            .into_iter()
            .map(|(k, s)| UsageRecord {
                at: OffsetDateTime::from_unix_timestamp(k.minute * 60)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                user_id: k.user_id,
                username: k.username,
                token_id: k.token_id,
                provider: k.provider,
                model: k.model,
                prompt_tokens: s.prompt_tokens,
                completion_tokens: s.completion_tokens,
                status: k.status,
                latency_ms: s.latency_ms,
                cost: s.cost,
                requests: s.requests,
            })
            .collect()
    }

    /// Folds a batch that could not be written back in.
    fn put_back(&self, batch: Vec<UsageRecord>) {
        for r in batch {
            self.record(r);
        }
    }

    /// Records waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Calls whose usage was dropped because the store could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

pub struct UsageActor {
    store: SharedStore,
    sink: UsageSink,
    flush_every: Duration,
}

impl UsageActor {
    pub fn new(store: SharedStore, sink: UsageSink, flush_every: Duration) -> Self {
        UsageActor {
            store,
            sink,
            flush_every,
        }
    }
}

impl Actor for UsageActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.flush_every, |_, ctx| ctx.notify(FlushUsage));
    }
}

impl Supervised for UsageActor {}

/// Writes every pending record now; answers once they are durable.
#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct FlushUsage;

impl Handler<FlushUsage> for UsageActor {
    type Result = ResponseFuture<Result<(), GatehouseError>>;
    fn handle(&mut self, _: FlushUsage, _: &mut Context<Self>) -> Self::Result {
        let batch = self.sink.take();
        let (store, sink) = (self.store.clone(), self.sink.clone());
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            let n = batch.len();
            match store.record_usage(batch.clone()).await {
                Ok(()) => {
                    tracing::debug!(records = n, "usage written");
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = n, "writing usage failed; retrying at the next flush");
                    sink.put_back(batch);
                    Err(e.into())
                }
            }
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Ping;

impl Handler<Ping> for UsageActor {
    type Result = Result<(), GatehouseError>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(secs: i64, user: &str, model: &str, status: u16) -> UsageRecord {
        UsageRecord {
            at: OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap(),
            user_id: format!("id-{user}"),
            username: user.into(),
            token_id: None,
            provider: "p".into(),
            model: model.into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            status,
            latency_ms: 100,
            cost: 0.5,
            requests: 1,
        }
    }

    #[test]
    fn calls_of_one_minute_fold_into_one_record_and_others_do_not() {
        let sink = UsageSink::default();
        // 1_700_000_000 is 20 s into its minute.
        for secs in [0, 10, 39] {
            sink.record(call(secs, "alice", "p/m", 200));
        }
        sink.record(call(40, "alice", "p/m", 200)); // the next minute
        sink.record(call(0, "bob", "p/m", 200));
        sink.record(call(0, "alice", "p/other", 200));
        sink.record(call(0, "alice", "p/m", 502));
        assert_eq!(sink.pending(), 5);
        let mut batch = sink.take();
        batch.sort_by_key(|r| (r.at, r.username.clone(), r.model.clone(), r.status));
        let folded = &batch[0];
        assert_eq!((folded.username.as_str(), folded.status), ("alice", 200));
        assert_eq!(folded.requests, 3);
        assert_eq!(
            (
                folded.prompt_tokens,
                folded.completion_tokens,
                folded.latency_ms
            ),
            (30, 15, 300)
        );
        assert_eq!(
            folded.at.unix_timestamp() % 60,
            0,
            "a record is dated at its minute"
        );
        assert_eq!(batch.iter().map(|r| r.requests).sum::<u64>(), 7);
        assert_eq!(sink.pending(), 0);
        sink.put_back(batch);
        assert_eq!(sink.pending(), 5, "a batch put back folds in again");
    }
}
