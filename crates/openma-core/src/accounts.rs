//! Console accounts: people with a password (stored only as an argon2id hash, made at the
//! edge), members of tenants with a role, and their signed-in console sessions (the cookie's
//! token is stored only as its SHA-256, next to the session's CSRF token). The operations
//! run over the [`AccountStore`] port, so the native server (through [`crate::Platform`]) and
//! the Workers (on D1) share them.

use openma_types::Timestamp;
use sha2::Digest;

use crate::error::{DomainError, DomainResult};
use crate::ports::{AccountStore, Clock, IdGen};
use crate::{Platform, TenantId};

/// What a member may do in a tenant's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// A signed-in console session, as its cookie's token finds it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleSession {
    pub user_id: String,
    pub email: String,
    pub tenant: TenantId,
    pub role: Role,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// The stored form of a cookie token.
pub fn token_hash(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// E-mail addresses are compared lower-case; a plausible shape is all that is checked.
pub fn normalize_email(email: &str) -> DomainResult<String> {
    let e = email.trim().to_ascii_lowercase();
    let ok = e.len() <= 254 && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.')) && !e.contains(char::is_whitespace);
    if !ok {
        return Err(DomainError::invalid(format!("`{email}` is not an e-mail address")));
    }
    Ok(e)
}

/// The account and console-session operations, bound to one set of adapters.
pub struct Accounts<'a> {
    pub store: &'a dyn AccountStore,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
}

impl Accounts<'_> {
    /// Creates a user (or, for an existing e-mail, keeps the user) and makes it a member of
    /// `tenant` with `role`.
    pub async fn add_member(&self, email: &str, password_hash: &str, tenant: &TenantId, role: Role) -> DomainResult<User> {
        let email = normalize_email(email)?;
        let user = match self.store.find_user(&email).await? {
            Some(u) => u,
            None => {
                let u = User { id: self.ids.new_id("user"), email, password_hash: password_hash.to_owned(), created_at: self.clock.now() };
                self.store.insert_user(&u).await?;
                u
            }
        };
        self.store.put_membership(&user.id, tenant, role.as_str(), self.clock.now()).await?;
        Ok(user)
    }

    pub async fn find_user(&self, email: &str) -> DomainResult<Option<User>> {
        let email = normalize_email(email)?;
        Ok(self.store.find_user(&email).await?)
    }

    /// Replaces a user's password hash and signs every one of its sessions out.
    pub async fn set_password(&self, email: &str, password_hash: &str) -> DomainResult<()> {
        let user = self.find_user(email).await?.ok_or_else(|| DomainError::not_found("user", email))?;
        self.store.set_password(&user.id, password_hash, self.clock.now()).await?;
        self.store.delete_console_sessions_of(&user.id).await?;
        Ok(())
    }

    /// The tenants a user belongs to, with the role in each.
    pub async fn memberships(&self, user_id: &str) -> DomainResult<Vec<(TenantId, Role)>> {
        let rows = self.store.memberships(user_id).await?;
        Ok(rows.into_iter().filter_map(|(t, r)| Role::parse(&r).map(|r| (t, r))).collect())
    }

    pub async fn start_console_session(&self, token: &str, user_id: &str, tenant: &TenantId, csrf: &str, ttl_secs: i64) -> DomainResult<()> {
        let now = self.clock.now();
        let expires = Timestamp::from_micros(now.as_micros() + ttl_secs * 1_000_000);
        Ok(self.store.insert_console_session(&token_hash(token), user_id, tenant, csrf, now, expires).await?)
    }

    /// The live session of a cookie token (an expired one is removed).
    pub async fn console_session(&self, token: &str) -> DomainResult<Option<ConsoleSession>> {
        let hash = token_hash(token);
        let Some(s) = self.store.console_session(&hash).await? else { return Ok(None) };
        if s.expires_at <= self.clock.now() {
            self.store.delete_console_session(&hash).await?;
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// Switches a signed-in session to another tenant the user belongs to.
    pub async fn switch_console_tenant(&self, token: &str, user_id: &str, tenant: &TenantId) -> DomainResult<()> {
        if !self.memberships(user_id).await?.iter().any(|(t, _)| t == tenant) {
            return Err(DomainError::not_found("tenant", tenant.as_str()));
        }
        Ok(self.store.set_console_session_tenant(&token_hash(token), tenant).await?)
    }

    pub async fn end_console_session(&self, token: &str) -> DomainResult<()> {
        Ok(self.store.delete_console_session(&token_hash(token)).await?)
    }
}

impl Platform {
    /// The account operations on this platform's store.
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts { store: &*self.store, clock: &*self.clock, ids: &*self.ids }
    }

    /// Creates a user (or, for an existing e-mail, keeps the user) and makes it a member of
    /// `tenant` with `role`.
    pub async fn add_member(&self, email: &str, password_hash: &str, tenant: &TenantId, role: Role) -> DomainResult<User> {
        self.accounts().add_member(email, password_hash, tenant, role).await
    }

    pub async fn find_user(&self, email: &str) -> DomainResult<Option<User>> {
        self.accounts().find_user(email).await
    }

    /// Replaces a user's password hash and signs every one of its sessions out.
    pub async fn set_password(&self, email: &str, password_hash: &str) -> DomainResult<()> {
        self.accounts().set_password(email, password_hash).await
    }

    /// The tenants a user belongs to, with the role in each.
    pub async fn memberships(&self, user_id: &str) -> DomainResult<Vec<(TenantId, Role)>> {
        self.accounts().memberships(user_id).await
    }

    pub async fn start_console_session(&self, token: &str, user_id: &str, tenant: &TenantId, csrf: &str, ttl_secs: i64) -> DomainResult<()> {
        self.accounts().start_console_session(token, user_id, tenant, csrf, ttl_secs).await
    }

    /// The live session of a cookie token (an expired one is removed).
    pub async fn console_session(&self, token: &str) -> DomainResult<Option<ConsoleSession>> {
        self.accounts().console_session(token).await
    }

    /// Switches a signed-in session to another tenant the user belongs to.
    pub async fn switch_console_tenant(&self, token: &str, user_id: &str, tenant: &TenantId) -> DomainResult<()> {
        self.accounts().switch_console_tenant(token, user_id, tenant).await
    }

    pub async fn end_console_session(&self, token: &str) -> DomainResult<()> {
        self.accounts().end_console_session(token).await
    }
}
