//! The connections' own runtime: pooled connections are opened and driven on
//! one thread of their own, so an actix worker or arbiter that stops never
//! takes them with it.

use super::error::describe;
use super::BoxFut;
use crate::error::StoreError;
use deadpool_postgres::Connect;
use tokio_postgres::NoTls;

/// One thread running a current-thread runtime for connection I/O. It stops
/// when the store is dropped.
pub(super) struct IoRuntime {
    pub(super) handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IoRuntime {
    pub(super) fn start() -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("gatehouse-pg-io".into())
            .spawn(move || {
                let _ = rt.block_on(stopped);
            })?;
        Ok(IoRuntime {
            handle,
            _stop: stop,
        })
    }
}

/// Opens connections on the I/O runtime and sets them up (statement
/// timeout, schema).
pub(super) struct IoConnect {
    pub(super) rt: tokio::runtime::Handle,
    /// Run once on each new connection.
    pub(super) setup: String,
}

impl Connect for IoConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFut<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = pg_config.clone();
        let rt = self.rt.clone();
        let setup = self.setup.clone();
        Box::pin(async move {
            let spawner = rt.clone();
            let opened = rt
                .spawn(async move {
                    let (client, connection) = config.connect(NoTls).await?;
                    let task = spawner.spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!(error = %describe(&e), "PostgreSQL connection ended");
                        }
                    });
                    if let Err(e) = client.batch_execute(&setup).await {
                        task.abort();
                        return Err(e);
                    }
                    Ok((client, task))
                })
                .await;
            match opened {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime lives as long as the pool that calls this, so
                // this is not expected; answer with a driver error all the same.
                Err(_) => Err(tokio_postgres::Config::new()
                    .connect(NoTls)
                    .await
                    .err()
                    .expect("a configuration without a host does not connect")),
            }
        })
    }
}
