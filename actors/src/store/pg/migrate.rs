//! The embedded migrations, and the checks and lock that make applying them
//! safe (`actors/migrations/`).

use super::PgStore;
use crate::error::GatehouseError;

/// The embedded migrations, applied in order; a version is never edited once
/// released, only followed by a new one.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../../migrations/0001_init.sql")),
    (2, include_str!("../../../migrations/0002_avatars.sql")),
    (3, include_str!("../../../migrations/0003_usage.sql")),
    (4, include_str!("../../../migrations/0004_tasks.sql")),
    (
        5,
        include_str!("../../../migrations/0005_usage_requests.sql"),
    ),
    (6, include_str!("../../../migrations/0006_gateway.sql")),
    (7, include_str!("../../../migrations/0007_limits.sql")),
];

/// `[a-z_][a-z0-9_]{0,62}`: safe to quote into SQL.
pub(super) fn valid_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// The advisory-lock key that serialises migrations of one schema (FNV-1a).
fn advisory_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "gatehouse:migrate:".bytes().chain(schema.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Applies the migrations not yet applied, in one transaction under an
/// advisory lock, so two instances starting together don't race.
pub(super) async fn migrate(store: &PgStore) -> Result<(), GatehouseError> {
    let key = advisory_key(store.inner.schema.as_deref().unwrap_or(""));
    let args = (key, store.inner.schema.clone());
    store
        .tx("migrate", &args, |t, (key, schema)| {
            Box::pin(async move {
                // Not bounded by the store's statement timeout: a migration
                // (or waiting for another instance's) may take long.
                t.batch_execute("SET LOCAL statement_timeout = 0").await?;
                t.execute("SELECT pg_advisory_xact_lock($1)", &[key])
                    .await?;
                if let Some(s) = schema {
                    t.batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS \"{s}\"; SET LOCAL search_path TO \"{s}\""
                    ))
                    .await?;
                }
                t.batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (\
                   version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await?;
                let applied: Vec<i32> = t
                    .query("SELECT version FROM schema_migrations", &[])
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                for (version, sql) in MIGRATIONS {
                    if applied.contains(version) {
                        continue;
                    }
                    t.batch_execute(sql).await?;
                    t.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                        &[version],
                    )
                    .await?;
                    tracing::info!(version, "applied PostgreSQL store migration");
                }
                let known = MIGRATIONS.last().map_or(0, |m| m.0);
                if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
                    tracing::warn!(
                        newer,
                        known,
                        "the PostgreSQL store was migrated by a newer gatehouse"
                    );
                }
                Ok(())
            })
        })
        .await
}
