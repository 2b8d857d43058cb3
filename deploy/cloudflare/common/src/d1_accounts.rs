//! The [`AccountStore`] port on D1: console users, their memberships of tenants and their
//! signed-in sessions, in the `users`, `memberships` and `console_sessions` tables of the
//! native SQLite schema, with the same columns.

use async_trait::async_trait;
use openma_core::accounts::{ConsoleSession, Role, User};
use openma_core::ports::AccountStore;
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use serde::Deserialize;

use crate::d1::{D1, micros};
use crate::send;

#[derive(Deserialize)]
struct UserRow {
    id: String,
    email: String,
    password_hash: String,
    created_at: i64,
}

#[derive(Deserialize)]
struct MembershipRow {
    tenant_id: String,
    role: String,
}

#[derive(Deserialize)]
struct SessionRow {
    user_id: String,
    email: String,
    tenant_id: String,
    role: String,
    csrf_token: String,
    expires_at: i64,
}

#[async_trait]
impl AccountStore for D1 {
    async fn insert_user(&self, u: &User) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            &[u.id.as_str().into(), u.email.as_str().into(), u.password_hash.as_str().into(), micros(u.created_at)],
        ))
        .map(drop)
    }

    async fn find_user(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> =
            send!(self.first("SELECT id, email, password_hash, created_at FROM users WHERE email = ?1", &[email.into()]))?;
        Ok(row.map(|r| User { id: r.id, email: r.email, password_hash: r.password_hash, created_at: Timestamp::from_micros(r.created_at) }))
    }

    async fn set_password(&self, user_id: &str, password_hash: &str, at: Timestamp) -> Result<(), StoreError> {
        send!(self.run(
            "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
            &[user_id.into(), password_hash.into(), micros(at)],
        ))
        .map(drop)
    }

    async fn put_membership(&self, user_id: &str, tenant: &TenantId, role: &str, at: Timestamp) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role",
            &[user_id.into(), tenant.as_str().into(), role.into(), micros(at)],
        ))
        .map(drop)
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<(TenantId, String)>, StoreError> {
        let rows: Vec<MembershipRow> = send!(self.all(
            "SELECT tenant_id, role FROM memberships WHERE user_id = ?1 ORDER BY created_at, tenant_id",
            &[user_id.into()],
        ))?;
        Ok(rows.into_iter().map(|r| (TenantId::from_trusted(r.tenant_id), r.role)).collect())
    }

    async fn insert_console_session(
        &self,
        token_hash: &str,
        user_id: &str,
        tenant: &TenantId,
        csrf: &str,
        at: Timestamp,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO console_sessions (token_hash, user_id, tenant_id, csrf_token, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[token_hash.into(), user_id.into(), tenant.as_str().into(), csrf.into(), micros(at), micros(expires)],
        ))
        .map(drop)
    }

    async fn console_session(&self, token_hash: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let row: Option<SessionRow> = send!(self.first(
            "SELECT s.user_id, u.email, s.tenant_id, m.role, s.csrf_token, s.expires_at FROM console_sessions s \
             JOIN users u ON u.id = s.user_id JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id \
             WHERE s.token_hash = ?1",
            &[token_hash.into()],
        ))?;
        let Some(r) = row else { return Ok(None) };
        let Some(role) = Role::parse(&r.role) else { return Ok(None) };
        Ok(Some(ConsoleSession {
            user_id: r.user_id,
            email: r.email,
            tenant: TenantId::from_trusted(r.tenant_id),
            role,
            csrf_token: r.csrf_token,
            expires_at: Timestamp::from_micros(r.expires_at),
        }))
    }

    async fn delete_console_session(&self, token_hash: &str) -> Result<(), StoreError> {
        send!(self.run("DELETE FROM console_sessions WHERE token_hash = ?1", &[token_hash.into()])).map(drop)
    }

    async fn set_console_session_tenant(&self, token_hash: &str, tenant: &TenantId) -> Result<(), StoreError> {
        send!(self.run(
            "UPDATE console_sessions SET tenant_id = ?2 WHERE token_hash = ?1",
            &[token_hash.into(), tenant.as_str().into()],
        ))
        .map(drop)
    }

    async fn delete_console_sessions_of(&self, user_id: &str) -> Result<(), StoreError> {
        send!(self.run("DELETE FROM console_sessions WHERE user_id = ?1", &[user_id.into()])).map(drop)
    }
}
