//! On a shared store, actors reload when another instance changes it. A
//! reload whose data was read before a local logout, but that finishes after
//! it, must not bring the ended session back (fail closed).

use async_trait::async_trait;
use gatehouse_actors::error::{GatehouseError, StoreError};
use gatehouse_actors::model::*;
use gatehouse_actors::session::{CreateSession, EndSession};
use gatehouse_actors::store::{Change, EndSessions, SledStore, Store};
use gatehouse_actors::users::ThrottleConfig;
use gatehouse_actors::{ActorConfig, Supervisor, SystemClock, TokenHash};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{broadcast, Mutex};

/// Sled with a change feed, whose `load_sessions` reads at once but answers
/// only when the test opens the gate: a reload that returns stale data.
struct Gated {
    inner: SledStore,
    gate: Arc<Mutex<()>>,
    feed: broadcast::Sender<Change>,
}

#[async_trait]
impl Store for Gated {
    fn backend(&self) -> &'static str {
        "gated"
    }
    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.feed.subscribe())
    }
    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let data = self.inner.load_sessions().await;
        let _open = self.gate.lock().await;
        data
    }
    async fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.load_users().await
    }
    async fn insert_user(&self, u: UserRecord) -> Result<(), GatehouseError> {
        self.inner.insert_user(u).await
    }
    async fn update_user(
        &self,
        id: &str,
        c: UserChange,
        e: Option<EndSessions>,
    ) -> Result<(UserRecord, u64), GatehouseError> {
        self.inner.update_user(id, c, e).await
    }
    async fn delete_user(&self, id: &str) -> Result<u64, GatehouseError> {
        self.inner.delete_user(id).await
    }
    async fn insert_session(&self, s: SessionRecord) -> Result<(), GatehouseError> {
        self.inner.insert_session(s).await
    }
    async fn delete_session(&self, h: TokenHash) -> Result<bool, StoreError> {
        self.inner.delete_session(h).await
    }
    async fn delete_user_sessions(&self, id: &str, e: EndSessions) -> Result<u64, StoreError> {
        self.inner.delete_user_sessions(id, e).await
    }
    async fn touch_sessions(&self, s: Vec<(TokenHash, OffsetDateTime)>) -> Result<(), StoreError> {
        self.inner.touch_sessions(s).await
    }
    async fn sweep_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.sweep_sessions(now).await
    }
    async fn load_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.load_tokens().await
    }
    async fn insert_token(&self, t: TokenRecord) -> Result<(), GatehouseError> {
        self.inner.insert_token(t).await
    }
    async fn update_token(&self, id: &str, c: TokenChange) -> Result<TokenRecord, GatehouseError> {
        self.inner.update_token(id, c).await
    }
    async fn rotate_token(
        &self,
        id: &str,
        g: OffsetDateTime,
        n: TokenRecord,
    ) -> Result<TokenRecord, GatehouseError> {
        self.inner.rotate_token(id, g, n).await
    }
    async fn touch_tokens(&self, u: Vec<(String, OffsetDateTime)>) -> Result<(), StoreError> {
        self.inner.touch_tokens(u).await
    }
    async fn load_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.inner.load_signing_keys().await
    }
    async fn insert_signing_key(&self, k: SigningKeyRecord) -> Result<(), StoreError> {
        self.inner.insert_signing_key(k).await
    }
    async fn insert_oauth_state(&self, s: OAuthState) -> Result<(), StoreError> {
        self.inner.insert_oauth_state(s).await
    }
    async fn take_oauth_state(&self, s: &str) -> Result<Option<OAuthState>, StoreError> {
        self.inner.take_oauth_state(s).await
    }
    async fn sweep_oauth_states(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.sweep_oauth_states(now).await
    }
    async fn append_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.inner.append_audit(e).await
    }
    async fn list_audit(&self, n: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.list_audit(n).await
    }
    async fn put_avatar(&self, id: &str, ct: &str, data: Vec<u8>) -> Result<(), GatehouseError> {
        self.inner.put_avatar(id, ct, data).await
    }
    async fn get_avatar(&self, id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.inner.get_avatar(id).await
    }
    async fn record_usage(&self, b: Vec<UsageRecord>) -> Result<(), StoreError> {
        self.inner.record_usage(b).await
    }
    async fn usage_summary(&self, q: UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        self.inner.usage_summary(q).await
    }
    async fn usage_buckets(&self, q: UsageQuery, s: u64) -> Result<Vec<UsageBucket>, StoreError> {
        self.inner.usage_buckets(q, s).await
    }
    async fn save_task(
        &self,
        t: TaskRecord,
        e: Vec<TaskEvent>,
        i: Option<IdempotencyRecord>,
    ) -> Result<SaveTask, StoreError> {
        self.inner.save_task(t, e, i).await
    }
    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get_task(id).await
    }
    async fn load_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.load_tasks().await
    }
    async fn task_events(&self, id: &str, after: u64) -> Result<Vec<TaskEvent>, StoreError> {
        self.inner.task_events(id, after).await
    }
    async fn get_idempotency(
        &self,
        p: &str,
        k: &str,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.get_idempotency(p, k, now).await
    }
    async fn sweep_idempotency(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.sweep_idempotency(now).await
    }
    async fn claim_tasks(
        &self,
        i: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
        n: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.claim_tasks(i, now, until, n).await
    }
    async fn open_tasks(&self, cap: usize) -> Result<usize, StoreError> {
        self.inner.open_tasks(cap).await
    }
    async fn check_writable(&self) -> Result<(), StoreError> {
        self.inner.check_writable().await
    }
    async fn load_gateway(&self) -> Result<Vec<GatewayItem>, StoreError> {
        self.inner.load_gateway().await
    }
    async fn put_gateway_item(&self, item: GatewayItem) -> Result<bool, StoreError> {
        self.inner.put_gateway_item(item).await
    }
    async fn delete_gateway_item(&self, kind: ItemKind, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_gateway_item(kind, name).await
    }
    async fn put_gateway_items(&self, items: Vec<GatewayItem>) -> Result<(), StoreError> {
        self.inner.put_gateway_items(items).await
    }
    async fn reserve(&self, draws: Vec<Draw>) -> Result<Reserve, StoreError> {
        self.inner.reserve(draws).await
    }
    async fn adjust(&self, draws: Vec<Draw>) -> Result<(), StoreError> {
        self.inner.adjust(draws).await
    }
    async fn counters(&self, subject: &str, now: i64) -> Result<Vec<Counter>, StoreError> {
        self.inner.counters(subject, now).await
    }
    async fn sweep_counters(&self, now: i64) -> Result<u64, StoreError> {
        self.inner.sweep_counters(now).await
    }
}

#[actix_rt::test]
async fn a_reload_that_raced_a_logout_does_not_bring_the_session_back() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Mutex::new(()));
    let (feed, _) = broadcast::channel(16);
    let store = Arc::new(Gated {
        inner: SledStore::open(dir.path()).unwrap(),
        gate: gate.clone(),
        feed: feed.clone(),
    });
    let config = ActorConfig {
        sweep_interval: Duration::from_secs(3600),
        check_interval: Duration::from_secs(3600),
        oauth_state_ttl: time::Duration::minutes(10),
        throttle: ThrottleConfig {
            max_failures: 5,
            max_failures_per_ip: 5,
            window: time::Duration::minutes(15),
        },
        gateway: Default::default(),
        usage_flush: Duration::from_secs(1),
        tasks: Default::default(),
    };
    let (_sup, h) = Supervisor::start(store.clone(), Arc::new(SystemClock), config)
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let add = gatehouse_actors::users::AddUser {
        username: "ann".into(),
        password: None,
        admin: false,
        auth: "credentials".into(),
        reset_if_exists: false,
        now,
    };
    let (user, _) = h.users().send(add).await.unwrap().unwrap();
    let create = CreateSession {
        user_id: user.id.clone(),
        via: "password".into(),
        ttl: time::Duration::hours(1),
        ip: None,
        user_agent: None,
        external_sid: None,
        now,
    };
    let (token, _) = h.sessions().send(create).await.unwrap().unwrap();
    let hash = TokenHash::of(&token);
    assert!(h.session_view().validate(&hash, now).is_some());

    // Another instance "changed sessions": a reload starts and reads the
    // store (the session is there) but is held at the gate…
    let held = gate.lock().await;
    feed.send(Change::Sessions).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // …while this instance signs the session out.
    assert!(h
        .sessions()
        .send(EndSession { token_hash: hash })
        .await
        .unwrap()
        .unwrap());
    assert!(h.session_view().validate(&hash, now).is_none());
    drop(held);
    // The stale reload must be discarded (and redone), never applied.
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            h.session_view().validate(&hash, now).is_none(),
            "a signed-out session came back"
        );
    }
    // Later changes still reload: a session made directly in the store appears.
    let other = SessionRecord {
        id: "s2".into(),
        token_hash: TokenHash::of("elsewhere"),
        user_id: user.id.clone(),
        via: "password".into(),
        created_at: now,
        expires_at: now + time::Duration::hours(1),
        last_seen_at: now,
        ip: None,
        user_agent: None,
        external_sid: None,
    };
    store.inner.insert_session(other).await.unwrap();
    feed.send(Change::Sessions).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h
        .session_view()
        .validate(&TokenHash::of("elsewhere"), now)
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a change from another instance was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
