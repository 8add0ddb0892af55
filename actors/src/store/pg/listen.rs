//! Change notifications between instances sharing one database: every
//! write is followed by `pg_notify(channel, "<instance> <topics>")`; one
//! listening connection per store turns other instances' notifications into
//! [`Change`]s. After a (re)connect the feed says `All`, since notifications
//! sent meanwhile are lost. An idle listening connection is probed every few
//! seconds, so one that died silently (a network that drops packets instead
//! of refusing them) is noticed and replaced rather than trusted.

use super::error::describe;
use crate::store::Change;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::timeout;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel for a schema (LISTEN channels are database-wide).
pub(super) fn channel(schema: Option<&str>) -> String {
    match schema {
        Some(s) => format!("gatehouse_changes_{s}"),
        None => "gatehouse_changes".into(),
    }
}

pub(super) fn topic(c: Change) -> &'static str {
    match c {
        Change::Users => "users",
        Change::Sessions => "sessions",
        Change::Tokens => "tokens",
        Change::Keys => "keys",
        Change::Gateway => "gateway",
        Change::All => "all",
    }
}

fn parse(t: &str) -> Option<Change> {
    Some(match t {
        "users" => Change::Users,
        "sessions" => Change::Sessions,
        "tokens" => Change::Tokens,
        "keys" => Change::Keys,
        "gateway" => Change::Gateway,
        "all" => Change::All,
        _ => return None,
    })
}

/// How often an idle listening connection is probed.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Passes on another instance's notification `"<instance> <topics>"`.
fn forward(payload: &str, me: &str, tx: &broadcast::Sender<Change>) {
    let Some((from, topics)) = payload.split_once(' ') else {
        return;
    };
    if from == me {
        return;
    }
    for c in topics.split(',').filter_map(parse) {
        let _ = tx.send(c);
    }
}

/// Listens until the store is dropped (the runtime stops), reconnecting.
/// Connecting and each probe wait at most `wait`.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    me: String,
    tx: broadcast::Sender<Change>,
    wait: Duration,
) {
    loop {
        match timeout(wait, config.connect(NoTls)).await {
            Ok(Ok((client, mut connection))) => {
                let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                if ntx.send(n.payload().to_owned()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %describe(&e), "PostgreSQL change feed lost");
                                return;
                            }
                        }
                    }
                });
                let listening =
                    timeout(wait, client.batch_execute(&format!("LISTEN \"{channel}\""))).await;
                match listening {
                    Ok(Ok(())) => {
                        let _ = tx.send(Change::All);
                        let mut probe = tokio::time::interval(PROBE_EVERY);
                        probe.tick().await;
                        loop {
                            tokio::select! {
                                payload = nrx.recv() => {
                                    let Some(payload) = payload else { break };
                                    forward(&payload, &me, &tx);
                                }
                                _ = probe.tick() => {
                                    if !matches!(timeout(wait, client.simple_query("")).await, Ok(Ok(_))) {
                                        tracing::warn!("PostgreSQL change feed did not answer a probe; reconnecting");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %describe(&e), "LISTEN failed"),
                    Err(_) => tracing::warn!("LISTEN did not answer in time"),
                }
                driver.abort();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %describe(&e), "PostgreSQL change feed: cannot connect")
            }
            Err(_) => tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "PostgreSQL change feed: no connection in time"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
