//! Usage records leave the request path through a [`UsageSink`] (a push
//! under a short lock, no store write, no mailbox); the [`UsageActor`]
//! writes them to the store in batches every `flush_every`.

use crate::error::GatehouseError;
use crate::model::UsageRecord;
use crate::store::SharedStore;
use actix::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records waiting beyond this are dropped (and counted): a store that is
/// down must not grow memory without bound.
const MAX_PENDING: usize = 100_000;

#[derive(Clone, Default)]
pub struct UsageSink {
    pending: Arc<Mutex<Vec<UsageRecord>>>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink {
    pub fn record(&self, record: UsageRecord) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.push(record);
    }

    fn take(&self) -> Vec<UsageRecord> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts a batch that could not be written back in front of newer records.
    fn put_back(&self, mut batch: Vec<UsageRecord>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_PENDING.saturating_sub(pending.len());
        if batch.len() > room {
            let lost = batch.len() - room;
            batch.truncate(room);
            self.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        }
        batch.append(&mut pending);
        *pending = batch;
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Records dropped because the store could not keep up.
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
