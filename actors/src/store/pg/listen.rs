//! Change notifications between instances sharing one database: every
//! write is followed by `pg_notify(channel, "<instance> <topics>")`; one
//! listening connection per store turns other instances' notifications into
//! [`Change`]s. After a (re)connect the feed says `All`, since notifications
//! sent meanwhile are lost.

use super::error::describe;
use crate::store::Change;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::broadcast;
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

/// Listens until the store is dropped (the runtime stops), reconnecting.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    me: String,
    tx: broadcast::Sender<Change>,
) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
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
                match client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
                    Ok(()) => {
                        let _ = tx.send(Change::All);
                        while let Some(payload) = nrx.recv().await {
                            let Some((from, topics)) = payload.split_once(' ') else {
                                continue;
                            };
                            if from == me {
                                continue;
                            }
                            for c in topics.split(',').filter_map(parse) {
                                let _ = tx.send(c);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %describe(&e), "LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), "PostgreSQL change feed: cannot connect")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
