//! The audit trail.

use super::UserStoreActor;
use crate::error::GatehouseError;
use crate::ids::random_id;
use crate::model::AuditEvent;
use actix::prelude::*;
use std::net::IpAddr;
use time::OffsetDateTime;

/// Appends an audit event (durably).
#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct RecordAudit(pub AuditEvent);

impl RecordAudit {
    pub fn new(
        now: OffsetDateTime,
        actor: Option<&UserRecordRef<'_>>,
        action: &str,
        target: Option<String>,
        ip: Option<IpAddr>,
        details: serde_json::Value,
    ) -> Self {
        RecordAudit(AuditEvent {
            id: random_id(),
            at: now,
            actor: actor.map(|a| a.id.to_owned()),
            actor_name: actor
                .map(|a| a.name.to_owned())
                .unwrap_or_else(|| "anonymous".into()),
            action: action.to_owned(),
            target,
            ip,
            details,
        })
    }
}

/// Who did something, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct UserRecordRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

impl Handler<RecordAudit> for UserStoreActor {
    type Result = ResponseFuture<Result<(), GatehouseError>>;

    fn handle(&mut self, msg: RecordAudit, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.append_audit(msg.0).await?) })
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<AuditEvent>, GatehouseError>")]
pub struct ListAudit {
    pub limit: usize,
}

impl Handler<ListAudit> for UserStoreActor {
    type Result = ResponseFuture<Result<Vec<AuditEvent>, GatehouseError>>;

    fn handle(&mut self, msg: ListAudit, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.list_audit(msg.limit).await?) })
    }
}
