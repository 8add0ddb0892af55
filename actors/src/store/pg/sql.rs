//! Parameters and records: values kept out of the driver's debug log, records
//! as `jsonb`, and cached-statement helpers that work on a pooled connection
//! or inside a transaction.

use super::error::Fail;
use crate::error::StoreError;
use crate::ids::TokenHash;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

/// A parameter whose value stays out of the driver's debug log (token hashes,
/// OAuth states, whole records).
pub(super) struct Hidden<T>(pub(super) T);

impl<T> std::fmt::Debug for Hidden<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<T: ToSql> ToSql for Hidden<T> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        T::accepts(ty)
    }

    to_sql_checked!();
}

/// A record serialised up front, sent as `jsonb`.
pub(super) struct JsonOut(Vec<u8>);

impl std::fmt::Debug for JsonOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<json {} bytes>", self.0.len())
    }
}

impl ToSql for JsonOut {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// A `jsonb` column's text, borrowed from the row.
struct JsonIn<'a>(&'a [u8]);

impl<'a> FromSql<'a> for JsonIn<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => Ok(JsonIn(rest)),
                _ => Err("unsupported jsonb version".into()),
            }
        } else {
            Ok(JsonIn(raw))
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<JsonOut, StoreError> {
    // As the sled backend: a record that does not serialise is a backend error.
    serde_json::to_vec(v)
        .map(JsonOut)
        .map_err(|e| StoreError::Backend(e.to_string()))
}

pub(super) fn record<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> Result<T, Fail> {
    let raw: JsonIn<'_> = row.try_get(idx)?;
    Ok(serde_json::from_slice(raw.0).map_err(StoreError::from)?)
}

pub(super) fn records<T: serde::de::DeserializeOwned>(rows: &[Row]) -> Result<Vec<T>, Fail> {
    rows.iter().map(|r| record(r, 0)).collect()
}

pub(super) fn hash(h: &TokenHash) -> Hidden<&[u8]> {
    Hidden(&h.0[..])
}

pub(super) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Fail> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query(&st, params).await?)
}

pub(super) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, Fail> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&st, params).await?)
}

pub(super) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Fail> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.execute(&st, params).await?)
}
