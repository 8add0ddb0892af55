//! Open streams per principal: a sharded map of counters, touched once when
//! a stream opens and once when it ends (never per chunk). A principal with
//! no open stream has no entry, so memory follows the open streams.

use super::SHARDS;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Open streams by principal id, one shard of them.
type Shard = Mutex<HashMap<Arc<str>, usize>>;

#[derive(Clone)]
pub struct StreamSlots(Arc<Inner>);

struct Inner {
    max: usize,
    hasher: RandomState,
    shards: Box<[Shard]>,
}

impl Inner {
    fn shard(&self, key: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }
}

/// One open stream; dropping it (the stream ended) frees the slot.
pub struct StreamSlot {
    slots: Arc<Inner>,
    key: Arc<str>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = self
            .slots
            .shard(&self.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl StreamSlots {
    /// `max = 0`: no limit.
    pub fn new(max: usize) -> Self {
        StreamSlots(Arc::new(Inner {
            max,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }))
    }

    pub fn unlimited(&self) -> bool {
        self.0.max == 0
    }

    pub fn max(&self) -> usize {
        self.0.max
    }

    /// A slot for one more stream of `principal`, unless it has `max` open.
    pub fn acquire(&self, principal: &str) -> Option<StreamSlot> {
        let mut map = self
            .0
            .shard(principal)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = match map.get_key_value(principal) {
            Some((k, n)) if self.0.max == 0 || *n < self.0.max => k.clone(),
            Some(_) => return None,
            None => Arc::from(principal),
        };
        *map.entry(key.clone()).or_insert(0) += 1;
        Some(StreamSlot {
            slots: self.0.clone(),
            key,
        })
    }

    /// Streams `principal` has open now.
    pub fn open(&self, principal: &str) -> usize {
        let map = self
            .0
            .shard(principal)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(principal).copied().unwrap_or(0)
    }
}

/// A response body that holds its stream's slot until it is dropped (the
/// stream ended or the client went away).
pub struct SlotBody {
    body: BoxBody,
    _slot: StreamSlot,
}

impl SlotBody {
    /// `res` with its body holding `slot`.
    pub fn wrap(res: HttpResponse, slot: StreamSlot) -> HttpResponse {
        res.map_body(|_, body| BoxBody::new(SlotBody { body, _slot: slot }))
    }
}

impl MessageBody for SlotBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_and_freed_on_drop() {
        let s = StreamSlots::new(2);
        let a = s.acquire("u1").unwrap();
        let _b = s.acquire("u1").unwrap();
        assert!(s.acquire("u1").is_none());
        assert!(s.acquire("u2").is_some());
        drop(a);
        assert_eq!(s.open("u1"), 1);
        let _c = s.acquire("u1").unwrap();
        assert_eq!(s.open("u1"), 2);
    }

    #[test]
    fn entries_go_when_the_last_stream_ends() {
        let s = StreamSlots::new(3);
        let slots: Vec<_> = (0..3).map(|_| s.acquire("u").unwrap()).collect();
        drop(slots);
        assert_eq!(s.open("u"), 0);
        assert!(s.0.shards.iter().all(|m| m.lock().unwrap().is_empty()));
    }
}
