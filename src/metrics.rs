//! Prometheus metrics, kept in atomics: no lock and no allocation on the
//! request path once a series exists. A series is created the first time a
//! (route pattern, method, status) or a provider is seen, by copying a small
//! map (`ArcSwap::rcu`); route labels are the app's patterns
//! (`/admin/api/users/{name}`), never raw paths, so their number is bounded
//! by the route table.
//!
//! `GET /metrics` (text format 0.0.4) is served by [`crate::http::metrics`].

use actix_web::dev::ServiceResponse;
use actix_web::http::Method;
use arc_swap::ArcSwap;
use gatehouse_actors::ActorHandles;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the upstream latency buckets.
const LATENCY_BUCKETS: [f64; 13] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Requests whose path matched no route.
const UNMATCHED: &str = "unmatched";

#[derive(Default)]
pub struct Metrics {
    /// Route pattern → its (method, status) counters.
    requests: ArcSwap<HashMap<Box<str>, Arc<RouteCounts>>>,
    /// Provider name → latency of its calls.
    upstream: ArcSwap<HashMap<Arc<str>, Arc<Histogram>>>,
    active_streams: AtomicI64,
    throttled_signins: AtomicU64,
    /// Tasks queued or running, as the `TaskActor` last counted them.
    pub task_backlog: Arc<AtomicUsize>,
}

#[derive(Default)]
struct RouteCounts {
    cells: ArcSwap<Vec<Arc<Cell>>>,
}

struct Cell {
    method: &'static str,
    status: u16,
    count: AtomicU64,
}

impl RouteCounts {
    fn incr(&self, method: &'static str, status: u16) {
        let find = |cells: &[Arc<Cell>]| {
            cells
                .iter()
                .find(|c| c.status == status && c.method == method)
                .cloned()
        };
        if let Some(c) = find(&self.cells.load()) {
            c.count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.cells.rcu(|cells| {
            let mut cells = Vec::clone(cells);
            if find(&cells).is_none() {
                cells.push(Arc::new(Cell {
                    method,
                    status,
                    count: AtomicU64::new(0),
                }));
            }
            cells
        });
        if let Some(c) = find(&self.cells.load()) {
            c.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A latency histogram: per-bucket counts (not cumulative), the count and
/// the sum in microseconds.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Counts one open stream for as long as it lives.
pub struct ActiveStream(Arc<Metrics>);

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.0.active_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    /// One answered request: `route` is the matched pattern (`None`: no route).
    pub fn request(&self, route: Option<&str>, method: &Method, status: u16) {
        let route = route.unwrap_or(UNMATCHED);
        let method = method_label(method);
        if let Some(r) = self.requests.load().get(route) {
            r.incr(method, status);
            return;
        }
        self.requests.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.entry(route.into()).or_default();
            map
        });
        if let Some(r) = self.requests.load().get(route) {
            r.incr(method, status);
        }
    }

    /// The latency histogram of `provider`'s calls.
    pub fn upstream(&self, provider: &Arc<str>) -> Arc<Histogram> {
        if let Some(h) = self.upstream.load().get(provider) {
            return h.clone();
        }
        self.upstream.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.entry(provider.clone()).or_default();
            map
        });
        self.upstream
            .load()
            .get(provider)
            .cloned()
            .unwrap_or_default()
    }

    pub fn stream_opened(self: &Arc<Self>) -> ActiveStream {
        self.active_streams.fetch_add(1, Ordering::Relaxed);
        ActiveStream(self.clone())
    }

    pub fn signin_throttled(&self) {
        self.throttled_signins.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition (format 0.0.4); sessions and actor restarts
    /// are read from the actors' views.
    pub fn render(&self, handles: &ActorHandles) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP gatehouse_http_requests_total HTTP requests answered, by route pattern, method and status.\n# TYPE gatehouse_http_requests_total counter\n");
        let requests = self.requests.load();
        let mut routes: Vec<_> = requests.iter().collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        for (route, counts) in routes {
            let cells = counts.cells.load();
            let mut cells: Vec<_> = cells.iter().collect();
            cells.sort_by_key(|c| (c.method, c.status));
            for c in cells {
                let _ = writeln!(
                    out,
                    "gatehouse_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}",
                    escape(route),
                    c.method,
                    c.status,
                    c.count.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP gatehouse_upstream_latency_seconds Duration of model calls by provider, until the last byte of a stream.\n# TYPE gatehouse_upstream_latency_seconds histogram\n");
        let upstream = self.upstream.load();
        let mut providers: Vec<_> = upstream.iter().collect();
        providers.sort_by(|a, b| a.0.cmp(b.0));
        for (provider, h) in providers {
            let p = escape(provider);
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "gatehouse_upstream_latency_seconds_bucket{{provider=\"{p}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "gatehouse_upstream_latency_seconds_bucket{{provider=\"{p}\",le=\"+Inf\"}} {count}\ngatehouse_upstream_latency_seconds_sum{{provider=\"{p}\"}} {sum}\ngatehouse_upstream_latency_seconds_count{{provider=\"{p}\"}} {count}"
            );
        }
        let _ = write!(
            out,
            "# HELP gatehouse_active_streams Streamed model answers in flight.\n# TYPE gatehouse_active_streams gauge\ngatehouse_active_streams {}\n\
             # HELP gatehouse_sessions Live sessions.\n# TYPE gatehouse_sessions gauge\ngatehouse_sessions {}\n\
             # HELP gatehouse_actor_restarts_total Actors the supervisor replaced after they died.\n# TYPE gatehouse_actor_restarts_total counter\ngatehouse_actor_restarts_total {}\n\
             # HELP gatehouse_signins_throttled_total Password sign-ins refused by throttling.\n# TYPE gatehouse_signins_throttled_total counter\ngatehouse_signins_throttled_total {}\n\
             # HELP gatehouse_tasks_backlog Tasks queued or running (every instance), as last counted.\n# TYPE gatehouse_tasks_backlog gauge\ngatehouse_tasks_backlog {}\n",
            self.active_streams.load(Ordering::Relaxed).max(0),
            handles.session_view().len(),
            handles.restarts(),
            self.throttled_signins.load(Ordering::Relaxed),
            self.task_backlog.load(Ordering::Relaxed),
        );
        out
    }
}

/// Counts a response by its matched route pattern; call it from the
/// outermost middleware (`gatehouse serve` does, in its `wrap_fn`).
pub fn count_response<B>(res: &ServiceResponse<B>) {
    let req = res.request();
    if let Some(state) = req.app_data::<actix_web::web::Data<crate::AppState>>() {
        let route = req.match_pattern();
        state
            .metrics
            .request(route.as_deref(), req.method(), res.status().as_u16());
    }
}

/// A label value: `\`, `"` and newlines escaped.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_method_and_status_and_buckets_latency() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.request(Some("/v1/models"), &Method::GET, 200);
        }
        m.request(Some("/v1/models"), &Method::GET, 401);
        m.request(None, &Method::from_bytes(b"BREW").unwrap(), 404);
        let cells = m.requests.load();
        let r = cells.get("/v1/models").unwrap().cells.load();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].count.load(Ordering::Relaxed), 3);
        assert!(cells.contains_key(UNMATCHED));
        let h = m.upstream(&Arc::from("oa"));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(1000));
        assert_eq!(h.buckets[1].load(Ordering::Relaxed), 1);
        assert_eq!(h.count.load(Ordering::Relaxed), 2);
        assert!(Arc::ptr_eq(&h, &m.upstream(&Arc::from("oa"))));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
