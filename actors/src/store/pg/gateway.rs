//! Providers, profiles, aliases and settings changed at run time.

use super::error::into_store;
use super::sql::{execute, json, query, records, JsonOut};
use super::PgStore;
use crate::error::StoreError;
use crate::model::{GatewayItem, ItemKind};

pub(super) async fn load_gateway(store: &PgStore) -> Result<Vec<GatewayItem>, StoreError> {
    store
        .one("load_gateway", &(), |c, _| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT record FROM gateway_items ORDER BY kind, name",
                    &[],
                )
                .await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)
}

const UPSERT: &str = "INSERT INTO gateway_items (kind, name, record) VALUES ($1, $2, $3) \
     ON CONFLICT (kind, name) DO UPDATE SET record = EXCLUDED.record \
     RETURNING (xmax = 0)";

pub(super) async fn put_gateway_item(
    store: &PgStore,
    item: GatewayItem,
) -> Result<bool, StoreError> {
    let args = (item.kind.as_str(), item.name.clone(), json(&item)?);
    store
        .one("put_gateway_item", &args, |c, (kind, name, rec)| {
            Box::pin(async move {
                let rows = query(c, UPSERT, &[kind, name, rec]).await?;
                Ok(rows.first().map(|r| r.get::<_, bool>(0)).unwrap_or(false))
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn delete_gateway_item(
    store: &PgStore,
    kind: ItemKind,
    name: &str,
) -> Result<bool, StoreError> {
    let args = (
        kind.as_str(),
        name.to_owned(),
        format!("{}/%", like_escape(name)),
    );
    store
        .tx("delete_gateway_item", &args, |t, (kind, name, profiles)| {
            Box::pin(async move {
                let n = execute(
                    t,
                    "DELETE FROM gateway_items WHERE kind = $1 AND name = $2",
                    &[kind, name],
                )
                .await?;
                if *kind == ItemKind::Provider.as_str() {
                    execute(
                        t,
                        "DELETE FROM gateway_items WHERE kind = 'profile' AND name LIKE $1",
                        &[profiles],
                    )
                    .await?;
                }
                Ok(n > 0)
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn put_gateway_items(
    store: &PgStore,
    items: Vec<GatewayItem>,
) -> Result<(), StoreError> {
    let args = items
        .iter()
        .map(|i| Ok((i.kind.as_str(), i.name.clone(), json(i)?)))
        .collect::<Result<Vec<(&'static str, String, JsonOut)>, StoreError>>()?;
    store
        .tx("put_gateway_items", &args, |t, items| {
            Box::pin(async move {
                for (kind, name, rec) in items {
                    query(t, UPSERT, &[kind, name, rec]).await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

/// `name` as a literal `LIKE` prefix.
fn like_escape(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
