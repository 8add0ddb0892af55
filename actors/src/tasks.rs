//! `TaskActor`: durable tasks, their events, and idempotency keys.
//!
//! Every mutation (create, approve, cancel, retry) is one exclusive step of
//! the actor: it reads the stored key (replay, or refuse another body),
//! applies the transition to the stored task, and writes task, events and
//! key in one atomic store write — so one key makes at most one task, even
//! across instances (the store refuses a second key; a stale task version is
//! read again). Running is claimed through the store (`claim_tasks`), so each
//! task runs on one instance; a claim is renewed while the task runs and an
//! instance that dies has its tasks claimed by another once the claim lapses.
//! What a task does is the [`TaskRunner`]'s business (the HTTP side).

use crate::clock::SharedClock;
use crate::error::GatehouseError;
use crate::ids::random_id;
use crate::model::{IdempotencyRecord, SaveTask, TaskEvent, TaskRecord, TaskStatus};
use crate::store::SharedStore;
use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;

/// How a task ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(Value),
    Failed(Value),
}

/// Runs tasks (built on the actor's thread; HTTP clients are per thread).
pub trait TaskRunner {
    /// Runs `task` to its end, reporting outputs to `progress`. Dropping the
    /// future stops the work (and the upstream call).
    fn run(
        &self,
        task: TaskRecord,
        progress: Recipient<Progress>,
    ) -> LocalBoxFuture<'static, Outcome>;
    /// Tells whatever runs the task elsewhere (an agent backend) to stop.
    fn cancel(&self, task: TaskRecord) -> LocalBoxFuture<'static, ()>;
}

pub type SharedRunner = Arc<dyn Fn() -> Box<dyn TaskRunner> + Send + Sync>;

/// Who may approve a task that `requires_approval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approver {
    Owner,
    Admin,
    /// The owner or an admin.
    Both,
}

#[derive(Clone)]
pub struct TaskSetup {
    pub concurrency: usize,
    /// At most this many tasks wait to run (`queued` or `running`, across
    /// instances); a create past it is refused. 0: no bound.
    pub max_queued: usize,
    /// The backlog as last counted (refreshed every `poll`, raised by each
    /// create in between): a create checks it without a store read.
    pub backlog: Arc<AtomicUsize>,
    /// How long a claim holds without renewal.
    pub lease: StdDuration,
    /// How often idle instances look for tasks to claim.
    pub poll: StdDuration,
    pub approver: Approver,
    /// The store admits one process (sled): claims left by an earlier run
    /// of this process are stale at start and taken over at once.
    pub exclusive: bool,
    /// This process, as the claims name it.
    pub instance: String,
    /// Filled by the HTTP side once it is built.
    pub runner: Arc<Mutex<Option<SharedRunner>>>,
    pub notify: TaskNotify,
}

impl std::fmt::Debug for TaskSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSetup")
            .field("concurrency", &self.concurrency)
            .field("max_queued", &self.max_queued)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Default for TaskSetup {
    fn default() -> Self {
        TaskSetup {
            concurrency: 4,
            max_queued: 10_000,
            backlog: Arc::default(),
            lease: StdDuration::from_secs(30),
            poll: StdDuration::from_secs(1),
            approver: Approver::Both,
            exclusive: false,
            instance: random_id(),
            runner: Arc::default(),
            notify: TaskNotify::default(),
        }
    }
}

/// Wakes whoever waits on a task (event streams, `wait`) after each write.
#[derive(Clone, Default)]
pub struct TaskNotify {
    map: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl TaskNotify {
    pub fn subscribe(&self, task_id: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 1024 {
            map.retain(|_, n| Arc::strong_count(n) > 1);
        }
        map.entry(task_id.to_owned()).or_default().clone()
    }

    pub fn notify(&self, task_id: &str) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(task_id) {
            n.notify_waiters();
        }
    }
}

/// Who asks: what they may see and do.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user_id: String,
    /// Set when the request came with a gateway token: it sees only its own tasks.
    pub token_id: Option<String>,
    pub admin: bool,
}

impl Viewer {
    pub fn sees(&self, t: &TaskRecord) -> bool {
        self.admin
            || (t.owner == self.user_id && (self.token_id.is_none() || t.token_id == self.token_id))
    }
}

/// The `Task` object of API.md, as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Task)]
pub struct TaskView {
    pub id: String,
    /// Always `task`.
    #[schema(inline)]
    pub object: TaskObject,
    /// `chat.completion` or `agent.run`.
    pub kind: String,
    pub status: TaskStatus,
    /// The model of a `chat.completion` task.
    #[schema(required = true)]
    pub model: Option<String>,
    /// The owner's user id.
    pub owner: String,
    pub owner_name: String,
    /// The gateway token that created it, if one did.
    #[schema(required = true)]
    pub token_id: Option<String>,
    pub requires_approval: bool,
    pub attempts: u32,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// What the task produced once it `succeeded` (for a chat completion,
    /// the completion as the provider answered it).
    #[schema(required = true)]
    pub result: Option<Value>,
    /// Why it `failed`.
    #[schema(required = true)]
    pub error: Option<Value>,
}

/// The `object` tag of a task.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskObject {
    Task,
}

impl TaskView {
    pub fn of(t: &TaskRecord) -> Self {
        let at = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        TaskView {
            id: t.id.clone(),
            object: TaskObject::Task,
            kind: t.kind.clone(),
            status: t.status,
            model: t
                .input
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned),
            owner: t.owner.clone(),
            owner_name: t.owner_name.clone(),
            token_id: t.token_id.clone(),
            requires_approval: t.requires_approval,
            attempts: t.attempts,
            created_at: at(t.created_at),
            updated_at: at(t.updated_at),
            result: t.result.clone(),
            error: t.error.clone(),
        }
    }
}

/// The task as the API shows it ([`TaskView`]).
pub fn task_json(t: &TaskRecord) -> Value {
    serde_json::to_value(TaskView::of(t)).unwrap_or(Value::Null)
}

fn status_event(t: &TaskRecord, now: OffsetDateTime, extra: Value) -> TaskEvent {
    let mut data = json!({"status": t.status.as_str()});
    if let (Some(d), Value::Object(more)) = (data.as_object_mut(), extra) {
        d.extend(more);
    }
    TaskEvent {
        task_id: t.id.clone(),
        seq: t.events,
        at: now,
        kind: "status".into(),
        data,
    }
}

/// Moves `t` to `status` with one status event (version and counters bumped).
fn transition(
    t: &mut TaskRecord,
    status: TaskStatus,
    now: OffsetDateTime,
    extra: Value,
) -> TaskEvent {
    t.status = status;
    t.updated_at = now;
    t.version += 1;
    t.events += 1;
    status_event(t, now, extra)
}

/// A mutating request.
#[derive(Debug, Clone)]
pub enum Op {
    /// `task` is complete but for its status (set from `requires_approval`).
    Create(Box<TaskRecord>),
    Approve(String),
    Cancel(String),
    Retry(String),
}

#[derive(Message)]
#[rtype(result = "Result<Mutated, GatehouseError>")]
pub struct Mutate {
    pub viewer: Viewer,
    /// Whose idempotency key it is.
    pub principal: String,
    pub key: String,
    pub fingerprint: String,
    pub op: Op,
    pub now: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Mutated {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

/// An output (or error) a running task reports, and the backend's id once known.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Progress {
    pub task_id: String,
    pub kind: &'static str,
    pub data: Value,
    pub external_id: Option<String>,
}

pub struct TaskActor {
    store: SharedStore,
    clock: SharedClock,
    setup: TaskSetup,
    runner: Option<Rc<dyn TaskRunner>>,
    running: HashMap<String, SpawnHandle>,
    /// Claimed and being marked running (they count against the concurrency).
    starting: std::collections::HashSet<String>,
    claiming: bool,
    /// A backlog count is under way.
    counting: Arc<AtomicBool>,
    /// The first claim of an exclusive store also takes stale claims.
    first_claim: bool,
}

impl TaskActor {
    pub fn new(store: SharedStore, clock: SharedClock, setup: TaskSetup) -> Self {
        TaskActor {
            store,
            clock,
            setup,
            runner: None,
            running: HashMap::new(),
            starting: Default::default(),
            claiming: false,
            counting: Arc::default(),
            first_claim: true,
        }
    }

    fn runner(&mut self) -> Option<Rc<dyn TaskRunner>> {
        if self.runner.is_none() {
            let make = self
                .setup
                .runner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.runner = make.map(|m| Rc::from(m()));
        }
        self.runner.clone()
    }

    fn lease_until(&self, now: OffsetDateTime) -> OffsetDateTime {
        now + Duration::try_from(self.setup.lease).unwrap_or(Duration::seconds(30))
    }

    /// Claims what this instance has room for and starts it.
    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.claiming || self.runner().is_none() {
            return;
        }
        let busy = self.running.len() + self.starting.len();
        let free = self.setup.concurrency.saturating_sub(busy);
        if free == 0 {
            return;
        }
        self.claiming = true;
        let now = self.clock.now();
        let (store, instance, until) = (
            self.store.clone(),
            self.setup.instance.clone(),
            self.lease_until(now),
        );
        // Nobody else can hold a claim on an exclusive store: what an earlier
        // run of this process claimed is taken over at once.
        let as_of = if self.setup.exclusive && self.first_claim {
            OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT)
        } else {
            now
        };
        let first = std::mem::replace(&mut self.first_claim, false);
        let job = async move {
            let claimed = store.claim_tasks(&instance, as_of, until, free).await;
            (claimed, first)
        };
        ctx.spawn(job.into_actor(self).map(|(claimed, first), act, ctx| {
            act.claiming = false;
            if first && claimed.is_err() {
                act.first_claim = true;
            }
            match claimed {
                Ok(tasks) => {
                    for t in tasks {
                        act.start(t, ctx);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming tasks failed"),
            }
        }));
    }

    /// Marks a claimed task running (requeued first if it was running when
    /// its instance stopped) and runs it.
    fn start(&mut self, mut t: TaskRecord, ctx: &mut Context<Self>) {
        let Some(runner) = self.runner() else { return };
        if self.running.contains_key(&t.id) || !self.starting.insert(t.id.clone()) {
            return;
        }
        let now = self.clock.now();
        let reattach = t.kind == "agent.run" && t.external_id.is_some();
        let base = t.version;
        let mut events = Vec::new();
        if t.status == TaskStatus::Running && !reattach {
            events.push(transition(
                &mut t,
                TaskStatus::Queued,
                now,
                json!({"reason": "requeued after its instance stopped"}),
            ));
        }
        if t.status != TaskStatus::Running {
            t.attempts += 1;
            let attempt = json!({"attempt": t.attempts});
            events.push(transition(&mut t, TaskStatus::Running, now, attempt));
        }
        // One write, however many transitions it holds.
        t.version = base + 1;
        let store = self.store.clone();
        let id = t.id.clone();
        let save = async move {
            let saved = if events.is_empty() {
                Ok(SaveTask::Saved)
            } else {
                store.save_task(t.clone(), events, None).await
            };
            (saved, t)
        };
        ctx.spawn(save.into_actor(self).map(move |(saved, t), act, ctx| {
            act.starting.remove(&id);
            match saved {
                Ok(SaveTask::Saved) => {
                    act.setup.notify.notify(&id);
                    let progress = ctx.address().recipient();
                    let run = runner.run(t, progress);
                    let key = id.clone();
                    let handle = ctx.spawn(run.into_actor(act).map(move |outcome, act, ctx| {
                        act.running.remove(&id);
                        // Through the mailbox, after the progress reported before it.
                        ctx.address().do_send(Finish { task_id: id, outcome });
                    }));
                    act.running.insert(key, handle);
                }
                Ok(other) => tracing::info!(task = %id, ?other, "task changed before it started; left alone"),
                Err(e) => tracing::warn!(task = %id, error = %e, "starting a task failed; it will be claimed again"),
            }
        }));
    }

    /// Renews the claims of running tasks; stops those cancelled elsewhere.
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<String> = self.running.keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let now = self.clock.now();
        let (store, instance, until) = (
            self.store.clone(),
            self.setup.instance.clone(),
            self.lease_until(now),
        );
        let job = async move {
            let mut gone = Vec::new();
            for id in ids {
                match store.get_task(&id).await {
                    Ok(Some(mut t))
                        if t.status == TaskStatus::Running
                            && t.claimed_by.as_deref() == Some(&instance) =>
                    {
                        t.claim_until = Some(until);
                        t.version += 1;
                        let _ = store.save_task(t, Vec::new(), None).await;
                    }
                    Ok(_) => gone.push(id),
                    Err(e) => tracing::warn!(task = %id, error = %e, "renewing a claim failed"),
                }
            }
            gone
        };
        ctx.spawn(job.into_actor(self).map(|gone, act, ctx| {
            for id in gone {
                act.stop_local(&id, ctx);
            }
        }));
    }

    /// Counts the backlog again (other instances create and finish tasks too).
    fn count_backlog(&mut self, ctx: &mut Context<Self>) {
        if self.setup.max_queued == 0 || self.counting.swap(true, Ordering::Relaxed) {
            return;
        }
        let (store, cap, backlog, counting) = (
            self.store.clone(),
            self.setup.max_queued.saturating_add(1),
            self.setup.backlog.clone(),
            self.counting.clone(),
        );
        ctx.spawn(
            async move {
                match store.open_tasks(cap).await {
                    Ok(n) => backlog.store(n, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "counting the task backlog failed"),
                }
                counting.store(false, Ordering::Relaxed);
            }
            .into_actor(self),
        );
    }

    fn stop_local(&mut self, id: &str, ctx: &mut Context<Self>) {
        if let Some(handle) = self.running.remove(id) {
            ctx.cancel_future(handle);
            tracing::info!(task = %id, "stopped a task that was cancelled");
        }
    }
}

impl Actor for TaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.setup.poll, |act, ctx| {
            act.count_backlog(ctx);
            act.claim(ctx);
        });
        self.count_backlog(ctx);
        let beat = self.setup.lease / 3;
        ctx.run_interval(beat.max(StdDuration::from_millis(100)), |act, ctx| {
            act.heartbeat(ctx)
        });
        ctx.notify(Claim);
    }
}

impl Supervised for TaskActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.runner = None;
        self.running.clear();
        self.starting.clear();
        self.claiming = false;
        self.counting.store(false, Ordering::Relaxed);
    }
}

/// Looks for tasks to run now (after a create, an approval or a retry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Claim;

impl Handler<Claim> for TaskActor {
    type Result = ();
    fn handle(&mut self, _: Claim, ctx: &mut Context<Self>) {
        self.claim(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Ping;

impl Handler<Ping> for TaskActor {
    type Result = Result<(), GatehouseError>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

/// Deletes expired idempotency keys.
#[derive(Message)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct Sweep {
    pub now: OffsetDateTime,
}

impl Handler<Sweep> for TaskActor {
    type Result = ResponseFuture<Result<u64, GatehouseError>>;
    fn handle(&mut self, msg: Sweep, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.sweep_idempotency(msg.now).await?) })
    }
}

impl Handler<Progress> for TaskActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, p: Progress, _: &mut Context<Self>) -> Self::Result {
        let (store, clock, notify) = (
            self.store.clone(),
            self.clock.clone(),
            self.setup.notify.clone(),
        );
        AtomicResponse::new(Box::pin(
            async move {
                for _ in 0..5 {
                    let Ok(Some(mut t)) = store.get_task(&p.task_id).await else { return };
                    if t.status != TaskStatus::Running {
                        return;
                    }
                    let now = clock.now();
                    let mut events = Vec::new();
                    if !p.data.is_null() {
                        t.events += 1;
                        events.push(TaskEvent { task_id: t.id.clone(), seq: t.events, at: now, kind: p.kind.into(), data: p.data.clone() });
                    }
                    if p.external_id.is_some() {
                        t.external_id = p.external_id.clone();
                    }
                    t.version += 1;
                    t.updated_at = now;
                    match store.save_task(t, events, None).await {
                        Ok(SaveTask::Saved) => {
                            notify.notify(&p.task_id);
                            return;
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(task = %p.task_id, error = %e, "recording task progress failed");
                            return;
                        }
                    }
                }
            }
            .into_actor(self),
        ))
    }
}

/// A run ended: records the outcome unless the task was cancelled (or taken) meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
struct Finish {
    task_id: String,
    outcome: Outcome,
}

impl Handler<Finish> for TaskActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, f: Finish, _: &mut Context<Self>) -> Self::Result {
        let (store, clock, instance) = (
            self.store.clone(),
            self.clock.clone(),
            self.setup.instance.clone(),
        );
        let id = f.task_id;
        let job = async move {
            for _ in 0..5 {
                let Ok(Some(mut t)) = store.get_task(&id).await else {
                    return None;
                };
                if t.status != TaskStatus::Running || t.claimed_by.as_deref() != Some(&instance) {
                    return None;
                }
                let now = clock.now();
                let (status, extra) = match &f.outcome {
                    Outcome::Succeeded(v) => {
                        t.result = Some(v.clone());
                        t.error = None;
                        (TaskStatus::Succeeded, json!({}))
                    }
                    Outcome::Failed(e) => {
                        t.result = None;
                        t.error = Some(e.clone());
                        (TaskStatus::Failed, json!({"error": e}))
                    }
                };
                t.claimed_by = None;
                t.claim_until = None;
                let event = transition(&mut t, status, now, extra);
                match store.save_task(t, vec![event], None).await {
                    Ok(SaveTask::Saved) => return Some(id),
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(task = %id, error = %e, "recording a task's end failed");
                        return None;
                    }
                }
            }
            None
        };
        AtomicResponse::new(Box::pin(job.into_actor(self).map(|done, act, ctx| {
            if let Some(id) = done {
                act.setup.notify.notify(&id);
                let _ = act
                    .setup
                    .backlog
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            act.claim(ctx);
        })))
    }
}

/// The stored answer for a key, or a refusal when the body differs.
fn replay(rec: IdempotencyRecord, fingerprint: &str) -> Result<Mutated, GatehouseError> {
    if rec.fingerprint != fingerprint {
        return Err(GatehouseError::IdempotencyKeyReused);
    }
    Ok(Mutated {
        status: rec.status,
        body: rec.body,
        replayed: true,
    })
}

/// Applies `op` to the stored task: the new record, its events and the status code.
async fn apply(
    store: &SharedStore,
    op: &Op,
    viewer: &Viewer,
    approver: Approver,
    now: OffsetDateTime,
) -> Result<(TaskRecord, Vec<TaskEvent>, u16), GatehouseError> {
    let id = match op {
        Op::Create(t) => {
            let mut t = (**t).clone();
            t.status = if t.requires_approval {
                TaskStatus::PendingApproval
            } else {
                TaskStatus::Queued
            };
            t.events = 1;
            t.version = 1;
            let event = status_event(&t, now, json!({}));
            return Ok((t, vec![event], 202));
        }
        Op::Approve(id) | Op::Cancel(id) | Op::Retry(id) => id,
    };
    let mut t = store
        .get_task(id)
        .await?
        .filter(|t| viewer.sees(t))
        .ok_or(GatehouseError::NotFound)?;
    let from = t.status;
    let invalid = |what: &str| {
        GatehouseError::InvalidTransition(format!("a {} task cannot be {what}", from.as_str()))
    };
    let event = match op {
        Op::Approve(_) => {
            let is_owner = t.owner == viewer.user_id;
            let may = match approver {
                Approver::Owner => is_owner,
                Approver::Admin => viewer.admin,
                Approver::Both => is_owner || viewer.admin,
            };
            if !may {
                return Err(GatehouseError::Forbidden(
                    "you may not approve this task".into(),
                ));
            }
            if from != TaskStatus::PendingApproval {
                return Err(invalid("approved"));
            }
            transition(
                &mut t,
                TaskStatus::Queued,
                now,
                json!({"approved_by": viewer.user_id}),
            )
        }
        Op::Cancel(_) => {
            if from.is_final() {
                return Err(invalid("cancelled"));
            }
            t.claimed_by = None;
            t.claim_until = None;
            transition(&mut t, TaskStatus::Cancelled, now, json!({}))
        }
        Op::Retry(_) => {
            if !matches!(from, TaskStatus::Failed | TaskStatus::Cancelled) {
                return Err(invalid("retried"));
            }
            t.result = None;
            t.error = None;
            t.external_id = None;
            transition(&mut t, TaskStatus::Queued, now, json!({"retry": true}))
        }
        Op::Create(_) => unreachable!("handled above"),
    };
    Ok((t, vec![event], 200))
}

// Mutations run side by side, not one at a time through this mailbox: the
// store makes each one atomic (a second write of a key is refused, a stale
// task version is read again), so the actor only starts them and acts on
// what they did.
impl Handler<Mutate> for TaskActor {
    type Result = ResponseActFuture<Self, Result<Mutated, GatehouseError>>;

    fn handle(&mut self, m: Mutate, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let approver = self.setup.approver;
        let (limit, backlog) = (self.setup.max_queued, self.setup.backlog.clone());
        let job = async move {
            if let Some(rec) = store.get_idempotency(&m.principal, &m.key, m.now).await? {
                return replay(rec, &m.fingerprint).map(|r| (r, None));
            }
            // A replay is answered even when the queue is full; a new task
            // that would wait to run is not taken past the bound.
            let queues = match &m.op {
                Op::Create(t) => !t.requires_approval,
                Op::Approve(_) | Op::Retry(_) => true,
                Op::Cancel(_) => false,
            };
            if queues && limit > 0 && backlog.load(Ordering::Relaxed) >= limit {
                return Err(GatehouseError::QueueFull { limit });
            }
            for _ in 0..5 {
                let (task, events, status) =
                    apply(&store, &m.op, &m.viewer, approver, m.now).await?;
                let body = task_json(&task);
                let idem = IdempotencyRecord {
                    principal: m.principal.clone(),
                    key: m.key.clone(),
                    fingerprint: m.fingerprint.clone(),
                    status,
                    body: body.clone(),
                    task_id: Some(task.id.clone()),
                    created_at: m.now,
                    expires_at: m.now + Duration::hours(24),
                };
                let was_running = matches!(&m.op, Op::Cancel(_)).then(|| task.clone());
                match store.save_task(task, events, Some(idem)).await? {
                    SaveTask::Saved => {
                        if queues {
                            backlog.fetch_add(1, Ordering::Relaxed);
                        }
                        return Ok((
                            Mutated {
                                status,
                                body,
                                replayed: false,
                            },
                            Some((was_running, m.op.clone())),
                        ));
                    }
                    SaveTask::KeyTaken(rec) => {
                        return replay(rec, &m.fingerprint).map(|r| (r, None))
                    }
                    SaveTask::Stale => continue,
                }
            }
            Err(GatehouseError::Unavailable(
                "the task kept changing; retry".into(),
            ))
        };
        Box::pin(job.into_actor(self).map(|res, act, ctx| {
            let (answer, effect) = res?;
            if let Some((cancelled, op)) = effect {
                let id = match &op {
                    Op::Create(t) => t.id.clone(),
                    Op::Approve(id) | Op::Cancel(id) | Op::Retry(id) => id.clone(),
                };
                act.setup.notify.notify(&id);
                if let Some(t) = cancelled {
                    act.stop_local(&id, ctx);
                    if t.kind == "agent.run" {
                        if let Some(runner) = act.runner() {
                            ctx.spawn(runner.cancel(t).into_actor(act));
                        }
                    }
                } else {
                    act.claim(ctx);
                }
            }
            Ok(answer)
        }))
    }
}
