//! The SQL both backends share, expanded once per driver.

/// Implements [`openma_core::Store`] for `$store` (a struct with a `pool: Pool<$db>`).
/// Write transactions begin with a write, so SQLite takes its lock at once and its busy
/// timeout applies, instead of failing on a read-to-write upgrade.
#[macro_export]
macro_rules! sql_store {
    ($store:ident, $db:ty, $describe:literal, $notify:expr) => {
        use openma_core::ports::{Appended, Fence, LeaseHolder, DeleteOutcome, EventQuery, IdempotencyClaim, InboxEntry, ListQuery, Order, SessionFilter, StoredEvent, UsageGroup, UsageQuery, UsageRow};
        use openma_core::{ApiKey, Tenant, TenantId};
        use openma_core::tenancy::TenantLimits;
        use openma_types::Timestamp;
        use openma_types::agents::Agent;
        use openma_types::environments::Environment;
        use openma_types::sessions::Session;
        use openma_types::vaults::Vault;
        use openma_core::vaults::StoredCredential;
        use openma_core::files::{FileOrigin, StoredFile};
        use openma_core::skills::{StoredSkill, StoredSkillVersion, VersionRemoval};
        use openma_core::memory::ListBound;
        use openma_core::ports::{MemoryWrite, VersionFilter};
        use openma_types::memory::{Actor, Memory, MemoryStore, MemoryVersion};
        use sqlx::{QueryBuilder, Row};

        use $crate::{decode, encode};

        fn ts(v: Option<i64>) -> Option<Timestamp> {
            v.map(Timestamp::from_micros)
        }

        fn tenant_from_row(r: &<$db as sqlx::Database>::Row) -> Result<Tenant, sqlx::Error> {
            Ok(Tenant {
                id: TenantId::from_trusted(r.try_get::<String, _>("id")?),
                name: r.try_get("name")?,
                created_at: Timestamp::from_micros(r.try_get("created_at")?),
            })
        }

        fn key_from_row(r: &<$db as sqlx::Database>::Row) -> Result<ApiKey, sqlx::Error> {
            Ok(ApiKey {
                id: r.try_get("id")?,
                tenant_id: TenantId::from_trusted(r.try_get::<String, _>("tenant_id")?),
                name: r.try_get("name")?,
                prefix: r.try_get("prefix")?,
                hash: r.try_get("hash")?,
                created_at: Timestamp::from_micros(r.try_get("created_at")?),
                last_used_at: ts(r.try_get("last_used_at")?),
                revoked_at: ts(r.try_get("revoked_at")?),
            })
        }

        const KEY_COLUMNS: &str = "id, tenant_id, name, prefix, hash, created_at, last_used_at, revoked_at";

        /// Appends ` IN ($1, $2, …)` binding `values`.
        fn push_in<'a>(qb: &mut QueryBuilder<$db>, values: impl IntoIterator<Item = &'a str>) {
            qb.push(" IN (");
            let mut sep = qb.separated(", ");
            for v in values {
                sep.push_bind(v.to_owned());
            }
            qb.push(")");
        }

        /// Appends the archive filter, `created_at` bounds, the keyset position, the order
        /// and the limit shared by every list.
        fn push_page(qb: &mut QueryBuilder<$db>, q: &ListQuery) {
            if !q.include_archived {
                qb.push(" AND NOT archived");
            }
            for (op, v) in [(">", q.created.gt), (">=", q.created.gte), ("<", q.created.lt), ("<=", q.created.lte)] {
                if let Some(v) = v {
                    qb.push(" AND created_at ").push(op).push(" ").push_bind(v);
                }
            }
            let (cmp, dir) = match q.order {
                Order::Asc => (">", "ASC"),
                Order::Desc => ("<", "DESC"),
            };
            if let Some(p) = &q.after {
                qb.push(" AND (created_at ").push(cmp).push(" ").push_bind(p.created_at);
                qb.push(" OR (created_at = ").push_bind(p.created_at);
                qb.push(" AND id ").push(cmp).push(" ").push_bind(p.id.clone()).push("))");
            }
            qb.push(" ORDER BY created_at ").push(dir).push(", id ").push(dir);
            qb.push(" LIMIT ").push_bind(i64::from(q.limit));
        }

        fn bodies<T: serde::de::DeserializeOwned>(
            rows: Vec<<$db as sqlx::Database>::Row>,
        ) -> Result<Vec<T>, openma_core::StoreError> {
            rows.iter()
                .map(|r| decode(&r.try_get::<String, _>(0).map_err($crate::backend_error)?))
                .collect()
        }

        /// Replaces a session row if its `updated_at` is still `expected`.
        async fn write_session_row<'e, E: sqlx::Executor<'e, Database = $db>>(
            executor: E,
            tenant: &TenantId,
            s: &Session,
            expected: Timestamp,
        ) -> Result<bool, openma_core::StoreError> {
            let done = sqlx::query(
                "UPDATE sessions SET status = $3, updated_at = $4, archived = $5, body = $6 \
                 WHERE tenant_id = $1 AND id = $2 AND updated_at = $7",
            )
            .bind(tenant.as_str())
            .bind(&s.id)
            .bind(s.status.as_str())
            .bind(s.updated_at.as_micros())
            .bind(s.archived_at.is_some())
            .bind(encode(s))
            .bind(expected.as_micros())
            .execute(executor)
            .await
            .map_err($crate::backend_error)?;
            Ok(done.rows_affected() > 0)
        }

        async fn insert_skill_version_row<'e, E: sqlx::Executor<'e, Database = $db>>(
            executor: E,
            tenant: &TenantId,
            v: &StoredSkillVersion,
        ) -> Result<(), openma_core::StoreError> {
            sqlx::query(
                "INSERT INTO skill_versions (tenant_id, skill_id, id, created_at, blob_key, size_bytes, sha256, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(tenant.as_str())
            .bind(&v.version.skill_id)
            .bind(&v.version.id)
            .bind(v.version.created_at.as_micros())
            .bind(&v.blob_key)
            .bind(i64::try_from(v.size_bytes).unwrap_or(i64::MAX))
            .bind(&v.sha256)
            .bind(encode(v))
            .execute(executor)
            .await
            .map_err($crate::backend_error)?;
            Ok(())
        }

        /// Reads a skill inside a write transaction after a no-op write to its row, so
        /// concurrent version changes of one skill are serialised (a row lock on
        /// PostgreSQL, the write lock on SQLite).
        async fn lock_skill(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &TenantId,
            id: &str,
        ) -> Result<Option<StoredSkill>, openma_core::StoreError> {
            let done = sqlx::query("UPDATE skills SET updated_at = updated_at WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err($crate::backend_error)?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            let body: String = sqlx::query_scalar("SELECT body FROM skills WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .fetch_one(&mut **tx)
                .await
                .map_err($crate::backend_error)?;
            decode(&body).map(Some)
        }

        async fn write_skill_row<'e, E: sqlx::Executor<'e, Database = $db>>(
            executor: E,
            tenant: &TenantId,
            s: &StoredSkill,
        ) -> Result<(), openma_core::StoreError> {
            sqlx::query("UPDATE skills SET updated_at = $3, body = $4 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(&s.skill.id)
                .bind(s.skill.updated_at.as_micros())
                .bind(encode(s))
                .execute(executor)
                .await
                .map_err($crate::backend_error)?;
            Ok(())
        }

        fn stored_credential(r: &<$db as sqlx::Database>::Row) -> Result<StoredCredential, openma_core::StoreError> {
            let body: String = r.try_get("body").map_err($crate::backend_error)?;
            let secrets: String = r.try_get("secrets").map_err($crate::backend_error)?;
            Ok(StoredCredential {
                credential: decode(&body)?,
                unique_key: r.try_get("unique_key").map_err($crate::backend_error)?,
                secrets: decode(&secrets)?,
            })
        }

        fn stored_model_card(r: &<$db as sqlx::Database>::Row) -> Result<openma_core::model_cards::StoredModelCard, openma_core::StoreError> {
            let body: String = r.try_get("body").map_err($crate::backend_error)?;
            Ok(openma_core::model_cards::StoredModelCard {
                card: decode(&body)?,
                sealed_key: r.try_get("sealed_key").map_err($crate::backend_error)?,
            })
        }

        /// The insert of ledger rows; a row whose (source, kind) is there already is skipped,
        /// which is what makes metering idempotent.
        fn ledger_insert(tenant: &TenantId, ledger: &[openma_core::ledger::LedgerEntry]) -> QueryBuilder<$db> {
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO ledger_entries (tenant_id, id, session_id, agent_id, model, kind, quantity, unit_price, amount, currency, source, created_at) ",
            );
            qb.push_values(ledger, |mut row, l| {
                row.push_bind(tenant.as_str().to_owned())
                    .push_bind(l.id.clone())
                    .push_bind(l.session_id.clone())
                    .push_bind(l.agent_id.clone())
                    .push_bind(l.model.clone())
                    .push_bind(l.kind.clone())
                    .push_bind(l.quantity)
                    .push_bind(l.unit_price)
                    .push_bind(l.amount)
                    .push_bind(l.currency.clone())
                    .push_bind(l.source.clone())
                    .push_bind(l.created_at.as_micros());
            });
            qb.push(" ON CONFLICT (tenant_id, source, kind) DO NOTHING");
            qb
        }

        fn stored_integration(r: &<$db as sqlx::Database>::Row) -> Result<openma_core::integrations::StoredIntegration, openma_core::StoreError> {
            let body: String = r.try_get("body").map_err($crate::backend_error)?;
            Ok(openma_core::integrations::StoredIntegration {
                integration: decode(&body)?,
                sealed_signing_secret: r.try_get("sealed_signing_secret").map_err($crate::backend_error)?,
                sealed_credential: r.try_get("sealed_credential").map_err($crate::backend_error)?,
            })
        }

        fn stored_webhook_endpoint(r: &<$db as sqlx::Database>::Row) -> Result<openma_core::webhooks::StoredWebhookEndpoint, openma_core::StoreError> {
            let body: String = r.try_get("body").map_err($crate::backend_error)?;
            Ok(openma_core::webhooks::StoredWebhookEndpoint {
                endpoint: decode(&body)?,
                sealed_secret: r.try_get("sealed_secret").map_err($crate::backend_error)?,
            })
        }

        const DELIVERY_COLUMNS: &str = "tenant_id, id, endpoint_id, event_id, event_type, payload, status, attempts, next_attempt_at, \
                                        last_status, last_error, created_at, updated_at";

        fn queued_delivery(r: &<$db as sqlx::Database>::Row) -> Result<openma_core::webhooks::QueuedDelivery, openma_core::StoreError> {
            let e = $crate::backend_error;
            let status: String = r.try_get("status").map_err(e)?;
            Ok(openma_core::webhooks::QueuedDelivery {
                id: r.try_get("id").map_err(e)?,
                endpoint_id: r.try_get("endpoint_id").map_err(e)?,
                event_id: r.try_get("event_id").map_err(e)?,
                event_type: r.try_get("event_type").map_err(e)?,
                payload: r.try_get("payload").map_err(e)?,
                status: openma_types::webhooks::WebhookDeliveryStatus::parse(&status)
                    .ok_or_else(|| openma_core::StoreError::Backend(format!("corrupt row: delivery status `{status}`")))?,
                attempts: r.try_get("attempts").map_err(e)?,
                next_attempt_at: Timestamp::from_micros(r.try_get("next_attempt_at").map_err(e)?),
                last_status: r.try_get("last_status").map_err(e)?,
                last_error: r.try_get("last_error").map_err(e)?,
                created_at: Timestamp::from_micros(r.try_get("created_at").map_err(e)?),
                updated_at: Timestamp::from_micros(r.try_get("updated_at").map_err(e)?),
            })
        }

        const FILE_COLUMNS: &str = "body, blob_key, sha256, origin, path, purged";

        /// Where the usage export's acknowledgement is kept (`platform_meta`).
        fn export_ack_key(tenant: &TenantId) -> String {
            format!("usage_export_ack:{}", tenant.as_str())
        }

        fn stored_file(r: &<$db as sqlx::Database>::Row) -> Result<StoredFile, openma_core::StoreError> {
            let body: String = r.try_get("body").map_err($crate::backend_error)?;
            let origin: String = r.try_get("origin").map_err($crate::backend_error)?;
            Ok(StoredFile {
                meta: decode(&body)?,
                blob_key: r.try_get("blob_key").map_err($crate::backend_error)?,
                sha256: r.try_get("sha256").map_err($crate::backend_error)?,
                origin: FileOrigin::parse(&origin)
                    .ok_or_else(|| openma_core::StoreError::Backend(format!("corrupt row: file origin `{origin}`")))?,
                path: r.try_get("path").map_err($crate::backend_error)?,
                purged: r.try_get("purged").map_err($crate::backend_error)?,
            })
        }

        /// Whether any row still refers to a blob.
        async fn blob_in_use<'e, E: sqlx::Executor<'e, Database = $db>>(executor: E, key: &str) -> Result<bool, openma_core::StoreError> {
            let row = sqlx::query("SELECT 1 FROM files WHERE blob_key = $1 AND NOT purged LIMIT 1")
                .bind(key)
                .fetch_optional(executor)
                .await
                .map_err($crate::backend_error)?;
            Ok(row.is_some())
        }

        fn stored_event(r: &<$db as sqlx::Database>::Row) -> Result<StoredEvent, openma_core::StoreError> {
            let body: String = r.try_get("body").map_err($crate::backend_error)?;
            let internal: Option<String> = r.try_get("internal").map_err($crate::backend_error)?;
            Ok(StoredEvent {
                seq: r.try_get("seq").map_err($crate::backend_error)?,
                event: decode(&body)?,
                internal: internal.as_deref().map(decode).transpose()?,
            })
        }

        const MEMORY_COLUMNS: &str = "store_id, id, path, content_sha256, content_size, version_id, created_at, updated_at";

        fn utf8(bytes: Vec<u8>) -> Result<String, openma_core::StoreError> {
            String::from_utf8(bytes).map_err(|_| openma_core::StoreError::Backend("corrupt row: memory content is not UTF-8".into()))
        }

        fn memory_from_row(r: &<$db as sqlx::Database>::Row, with_content: bool) -> Result<Memory, openma_core::StoreError> {
            let get = |e: sqlx::Error| $crate::backend_error(e);
            let content = if with_content { Some(utf8(r.try_get::<Vec<u8>, _>("content").map_err(get)?)?) } else { None };
            Ok(Memory {
                id: r.try_get("id").map_err(get)?,
                tag: Default::default(),
                memory_store_id: r.try_get("store_id").map_err(get)?,
                path: r.try_get("path").map_err(get)?,
                content,
                content_sha256: r.try_get("content_sha256").map_err(get)?,
                content_size_bytes: r.try_get("content_size").map_err(get)?,
                memory_version_id: r.try_get("version_id").map_err(get)?,
                created_at: Timestamp::from_micros(r.try_get("created_at").map_err(get)?),
                updated_at: Timestamp::from_micros(r.try_get("updated_at").map_err(get)?),
            })
        }

        /// A version is kept as its JSON without content, plus the content on its own.
        fn version_from_row(r: &<$db as sqlx::Database>::Row, with_content: bool) -> Result<MemoryVersion, openma_core::StoreError> {
            let body: String = r.try_get("body").map_err($crate::backend_error)?;
            let mut v: MemoryVersion = decode(&body)?;
            if with_content {
                let content: Option<Vec<u8>> = r.try_get("content").map_err($crate::backend_error)?;
                v.content = content.map(utf8).transpose()?;
            }
            Ok(v)
        }

        fn actor_columns(a: Option<&Actor>) -> (Option<&'static str>, Option<String>) {
            match a {
                None => (None, None),
                Some(Actor::SessionActor { session_id }) => (Some("session_actor"), Some(session_id.clone())),
                Some(Actor::ApiActor { api_key_id }) => (Some("api_actor"), Some(api_key_id.clone())),
                Some(Actor::UserActor { user_id }) => (Some("user_actor"), Some(user_id.clone())),
                Some(Actor::ServiceAccountActor { service_account_id }) => (Some("service_account_actor"), Some(service_account_id.clone())),
            }
        }

        async fn insert_memory_version<'e, E: sqlx::Executor<'e, Database = $db>>(
            executor: E,
            tenant: &TenantId,
            v: &MemoryVersion,
        ) -> Result<(), openma_core::StoreError> {
            let (actor_type, actor_id) = actor_columns(v.created_by.as_ref());
            let body = MemoryVersion { content: None, ..v.clone() };
            sqlx::query(
                "INSERT INTO memory_versions (tenant_id, store_id, id, memory_id, operation, actor_type, actor_id, created_at, content, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(tenant.as_str())
            .bind(&v.memory_store_id)
            .bind(&v.id)
            .bind(&v.memory_id)
            .bind(v.operation.as_str())
            .bind(actor_type)
            .bind(actor_id)
            .bind(v.created_at.as_micros())
            .bind(v.content.as_ref().map(|c| c.as_bytes().to_vec()))
            .bind(encode(&body))
            .execute(executor)
            .await
            .map_err($crate::backend_error)?;
            Ok(())
        }

        /// Takes the store's row for the transaction (serialising writes to one store) if
        /// the store exists and is not archived.
        async fn hold_open_store<'e, E: sqlx::Executor<'e, Database = $db>>(
            executor: E,
            tenant: &TenantId,
            store_id: &str,
        ) -> Result<bool, openma_core::StoreError> {
            let done = sqlx::query("UPDATE memory_stores SET updated_at = updated_at WHERE tenant_id = $1 AND id = $2 AND NOT archived")
                .bind(tenant.as_str())
                .bind(store_id)
                .execute(executor)
                .await
                .map_err($crate::backend_error)?;
            Ok(done.rows_affected() > 0)
        }

        impl $store {
            async fn body<T: serde::de::DeserializeOwned>(
                &self,
                sql: &'static str,
                tenant: &TenantId,
                id: &str,
            ) -> Result<Option<T>, openma_core::StoreError> {
                let row = sqlx::query(sql)
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                match row {
                    None => Ok(None),
                    Some(r) => decode(&r.try_get::<String, _>(0).map_err($crate::backend_error)?).map(Some),
                }
            }

            /// After a write refused by the path's uniqueness: who holds the path (`Stale`
            /// when nobody does any more).
            async fn path_holder(&self, tenant: &TenantId, store_id: &str, path: &str) -> Result<MemoryWrite, openma_core::StoreError> {
                let id: Option<String> = sqlx::query_scalar("SELECT id FROM memories WHERE tenant_id = $1 AND store_id = $2 AND path = $3")
                    .bind(tenant.as_str())
                    .bind(store_id)
                    .bind(path)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(id.map_or(MemoryWrite::Stale, MemoryWrite::PathTaken))
            }

            async fn exists(&self, sql: &'static str, tenant: &TenantId, id: &str) -> Result<bool, openma_core::StoreError> {
                let row = sqlx::query(sql)
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(row.is_some())
            }

            async fn insert_file_row<'e, E: sqlx::Executor<'e, Database = $db>>(
                executor: E,
                tenant: &TenantId,
                f: &StoredFile,
            ) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO files (tenant_id, id, created_at, scope_id, origin, path, blob_key, sha256, expires_at, purged, body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(tenant.as_str())
                .bind(&f.meta.id)
                .bind(f.meta.created_at.as_micros())
                .bind(f.scope_id())
                .bind(f.origin.as_str())
                .bind(f.path.as_deref())
                .bind(&f.blob_key)
                .bind(&f.sha256)
                .bind(f.meta.expires_at.map(Timestamp::as_micros))
                .bind(f.purged)
                .bind(encode(&f.meta))
                .execute(executor)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn list_bodies<T: serde::de::DeserializeOwned>(
                &self,
                mut qb: QueryBuilder<$db>,
                q: &ListQuery,
            ) -> Result<Vec<T>, openma_core::StoreError> {
                push_page(&mut qb, q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                bodies(rows)
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::KeyStore for $store {
            async fn insert_tenant(&self, t: &Tenant) -> Result<(), openma_core::StoreError> {
                sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(t.id.as_str())
                    .bind(&t.name)
                    .bind(t.created_at.as_micros())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn list_tenants(&self) -> Result<Vec<Tenant>, openma_core::StoreError> {
                let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                rows.iter().map(tenant_from_row).collect::<Result<_, _>>().map_err($crate::backend_error)
            }

            async fn find_tenant(&self, id_or_name: &str) -> Result<Option<Tenant>, openma_core::StoreError> {
                let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1 OR name = $1")
                    .bind(id_or_name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(tenant_from_row).transpose().map_err($crate::backend_error)
            }

            async fn insert_api_key(&self, k: &ApiKey) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, created_at, last_used_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&k.id)
                .bind(k.tenant_id.as_str())
                .bind(&k.name)
                .bind(&k.prefix)
                .bind(&k.hash)
                .bind(k.created_at.as_micros())
                .bind(k.last_used_at.map(Timestamp::as_micros))
                .bind(k.revoked_at.map(Timestamp::as_micros))
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT ");
                qb.push(KEY_COLUMNS).push(" FROM api_keys WHERE hash = ").push_bind(hash);
                let row = qb.build().fetch_optional(&self.pool).await.map_err($crate::backend_error)?;
                row.as_ref().map(key_from_row).transpose().map_err($crate::backend_error)
            }

            async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<(), openma_core::StoreError> {
                sqlx::query("UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .bind(at.as_micros())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT ");
                qb.push(KEY_COLUMNS).push(" FROM api_keys WHERE tenant_id = ").push_bind(tenant.as_str());
                qb.push(" ORDER BY created_at, id");
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(key_from_row).collect::<Result<_, _>>().map_err($crate::backend_error)
            }

            async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND (id = $2 OR prefix = $2) AND revoked_at IS NULL",
                )
                .bind(tenant.as_str())
                .bind(id)
                .bind(at.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::SkillStore for $store {
            async fn insert_skill(&self, tenant: &TenantId, s: &StoredSkill, first: &StoredSkillVersion) -> Result<(), openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                sqlx::query("INSERT INTO skills (tenant_id, id, name, created_at, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(tenant.as_str())
                    .bind(&s.skill.id)
                    .bind(&s.name)
                    .bind(s.skill.created_at.as_micros())
                    .bind(s.skill.updated_at.as_micros())
                    .bind(encode(s))
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                insert_skill_version_row(&mut *tx, tenant, first).await?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(())
            }

            async fn get_skill(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredSkill>, openma_core::StoreError> {
                self.body("SELECT body FROM skills WHERE tenant_id = $1 AND id = $2", tenant, id).await
            }

            async fn find_skill_by_name(&self, tenant: &TenantId, name: &str) -> Result<Option<StoredSkill>, openma_core::StoreError> {
                self.body("SELECT body FROM skills WHERE tenant_id = $1 AND name = $2", tenant, name).await
            }

            async fn list_skills(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<StoredSkill>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM skills WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                push_page(&mut qb, &ListQuery { include_archived: true, ..q.clone() });
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                bodies(rows)
            }

            async fn delete_skill(&self, tenant: &TenantId, id: &str) -> Result<Option<Vec<String>>, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                if lock_skill(&mut tx, tenant, id).await?.is_none() {
                    return Ok(None);
                }
                let keys: Vec<String> = sqlx::query_scalar("SELECT blob_key FROM skill_versions WHERE tenant_id = $1 AND skill_id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                for table in ["DELETE FROM skill_versions WHERE tenant_id = $1 AND skill_id = $2", "DELETE FROM skills WHERE tenant_id = $1 AND id = $2"] {
                    sqlx::query(table).bind(tenant.as_str()).bind(id).execute(&mut *tx).await.map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(Some(keys))
            }

            async fn insert_skill_version(&self, tenant: &TenantId, v: &StoredSkillVersion) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let Some(mut skill) = lock_skill(&mut tx, tenant, &v.version.skill_id).await? else {
                    return Ok(false);
                };
                insert_skill_version_row(&mut *tx, tenant, v).await?;
                skill.skill.latest_version_id = v.version.id.clone();
                skill.skill.updated_at = v.version.created_at.max(skill.skill.updated_at);
                write_skill_row(&mut *tx, tenant, &skill).await?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn get_skill_version(&self, tenant: &TenantId, skill_id: &str, id: &str) -> Result<Option<StoredSkillVersion>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body FROM skill_versions WHERE tenant_id = $1 AND skill_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(skill_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                match row {
                    None => Ok(None),
                    Some(r) => decode(&r.try_get::<String, _>(0).map_err($crate::backend_error)?).map(Some),
                }
            }

            async fn list_skill_versions(&self, tenant: &TenantId, skill_id: &str, q: &ListQuery) -> Result<Vec<StoredSkillVersion>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM skill_versions WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned()).push(" AND skill_id = ").push_bind(skill_id.to_owned());
                push_page(&mut qb, &ListQuery { include_archived: true, ..q.clone() });
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                bodies(rows)
            }

            async fn delete_skill_version(&self, tenant: &TenantId, skill_id: &str, id: &str, now: Timestamp) -> Result<VersionRemoval, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let Some(mut skill) = lock_skill(&mut tx, tenant, skill_id).await? else {
                    return Ok(VersionRemoval::NotFound);
                };
                let key: Option<String> = sqlx::query_scalar("SELECT blob_key FROM skill_versions WHERE tenant_id = $1 AND skill_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(skill_id)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                let Some(blob_key) = key else {
                    return Ok(VersionRemoval::NotFound);
                };
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM skill_versions WHERE tenant_id = $1 AND skill_id = $2")
                    .bind(tenant.as_str())
                    .bind(skill_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if count <= 1 {
                    return Ok(VersionRemoval::LastVersion);
                }
                sqlx::query("DELETE FROM skill_versions WHERE tenant_id = $1 AND skill_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(skill_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                let latest: String = sqlx::query_scalar(
                    "SELECT id FROM skill_versions WHERE tenant_id = $1 AND skill_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(tenant.as_str())
                .bind(skill_id)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                skill.skill.latest_version_id = latest;
                skill.skill.updated_at = now.max(skill.skill.updated_at);
                write_skill_row(&mut *tx, tenant, &skill).await?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(VersionRemoval::Removed { blob_key })
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::WebhookStore for $store {
            async fn insert_webhook_endpoint(&self, tenant: &TenantId, w: &openma_core::webhooks::StoredWebhookEndpoint, max: i64) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                // the insert comes first so SQLite takes its write lock before the count
                sqlx::query(
                    "INSERT INTO webhook_endpoints (tenant_id, id, created_at, updated_at, archived, body, sealed_secret) \
                     VALUES ($1, $2, $3, $4, FALSE, $5, $6)",
                )
                .bind(tenant.as_str())
                .bind(&w.endpoint.id)
                .bind(w.endpoint.created_at.as_micros())
                .bind(w.endpoint.updated_at.as_micros())
                .bind(encode(&w.endpoint))
                .bind(&w.sealed_secret)
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = $1")
                    .bind(tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if count > max {
                    return Ok(false);
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn get_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<openma_core::webhooks::StoredWebhookEndpoint>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body, sealed_secret FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(stored_webhook_endpoint).transpose()
            }

            async fn update_webhook_endpoint(&self, tenant: &TenantId, w: &openma_core::webhooks::StoredWebhookEndpoint, expected: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "UPDATE webhook_endpoints SET updated_at = $3, body = $4, sealed_secret = $5 \
                     WHERE tenant_id = $1 AND id = $2 AND updated_at = $6",
                )
                .bind(tenant.as_str())
                .bind(&w.endpoint.id)
                .bind(w.endpoint.updated_at.as_micros())
                .bind(encode(&w.endpoint))
                .bind(&w.sealed_secret)
                .bind(expected.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_webhook_endpoints(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<openma_core::webhooks::StoredWebhookEndpoint>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body, sealed_secret FROM webhook_endpoints WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                push_page(&mut qb, q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(stored_webhook_endpoint).collect()
            }

            async fn enqueue_webhook_deliveries(&self, tenant: &TenantId, rows: &[openma_core::webhooks::QueuedDelivery]) -> Result<(), openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                for d in rows {
                    // an endpoint deleted meanwhile gets nothing (the EXISTS guard), not an error
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, payload, status, attempts, \
                         next_attempt_at, last_status, last_error, created_at, updated_at) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, $10 \
                         WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1 AND id = $3) \
                         ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING",
                    )
                    .bind(tenant.as_str())
                    .bind(&d.id)
                    .bind(&d.endpoint_id)
                    .bind(&d.event_id)
                    .bind(&d.event_type)
                    .bind(&d.payload)
                    .bind(d.status.as_str())
                    .bind(d.attempts)
                    .bind(d.next_attempt_at.as_micros())
                    .bind(d.created_at.as_micros())
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(())
            }

            async fn due_webhook_deliveries(&self, now: Timestamp, limit: u32) -> Result<Vec<(TenantId, openma_core::webhooks::QueuedDelivery)>, openma_core::StoreError> {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
                     ORDER BY next_attempt_at ASC, created_at ASC, id ASC LIMIT $2"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now.as_micros())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| {
                        let tenant: String = r.try_get("tenant_id").map_err($crate::backend_error)?;
                        Ok((TenantId::from_trusted(tenant), queued_delivery(r)?))
                    })
                    .collect()
            }

            async fn claim_webhook_delivery(&self, tenant: &TenantId, id: &str, attempts_seen: i64, now: Timestamp, lease_until: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $4, updated_at = $5 \
                     WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND attempts = $3 AND next_attempt_at <= $5",
                )
                .bind(tenant.as_str())
                .bind(id)
                .bind(attempts_seen)
                .bind(lease_until.as_micros())
                .bind(now.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn record_webhook_attempt(&self, tenant: &TenantId, id: &str, o: &openma_core::webhooks::AttemptOutcome) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, last_status = $5, last_error = $6, updated_at = $7 \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .bind(o.status.as_str())
                .bind(o.next_attempt_at.as_micros())
                .bind(o.last_status)
                .bind(o.last_error.as_deref())
                .bind(o.at.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn list_webhook_deliveries(&self, tenant: &TenantId, endpoint_id: &str, q: &ListQuery) -> Result<Vec<openma_core::webhooks::QueuedDelivery>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = "));
                qb.push_bind(tenant.as_str().to_owned()).push(" AND endpoint_id = ").push_bind(endpoint_id.to_owned());
                let q = ListQuery { include_archived: true, ..q.clone() };
                push_page(&mut qb, &q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(queued_delivery).collect()
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::AgentStore for $store {
            async fn insert_agent(&self, tenant: &TenantId, a: &Agent) -> Result<(), openma_core::StoreError> {
                let body = encode(a);
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                sqlx::query(
                    "INSERT INTO agents (tenant_id, id, version, created_at, archived, body) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(tenant.as_str())
                .bind(&a.id)
                .bind(a.version)
                .bind(a.created_at.as_micros())
                .bind(a.archived_at.is_some())
                .bind(&body)
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                sqlx::query("INSERT INTO agent_versions (tenant_id, agent_id, version, body) VALUES ($1, $2, $3, $4)")
                    .bind(tenant.as_str())
                    .bind(&a.id)
                    .bind(a.version)
                    .bind(&body)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                tx.commit().await.map_err($crate::backend_error)
            }

            async fn get_agent(&self, tenant: &TenantId, id: &str) -> Result<Option<Agent>, openma_core::StoreError> {
                self.body("SELECT body FROM agents WHERE tenant_id = $1 AND id = $2", tenant, id).await
            }

            async fn get_agent_version(&self, tenant: &TenantId, id: &str, version: i64) -> Result<Option<Agent>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body FROM agent_versions WHERE tenant_id = $1 AND agent_id = $2 AND version = $3")
                    .bind(tenant.as_str())
                    .bind(id)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                match row {
                    None => Ok(None),
                    Some(r) => decode(&r.try_get::<String, _>(0).map_err($crate::backend_error)?).map(Some),
                }
            }

            async fn update_agent(&self, tenant: &TenantId, a: &Agent, expected_version: i64) -> Result<bool, openma_core::StoreError> {
                let body = encode(a);
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let done = sqlx::query(
                    "UPDATE agents SET version = $3, archived = $4, body = $5 WHERE tenant_id = $1 AND id = $2 AND version = $6",
                )
                .bind(tenant.as_str())
                .bind(&a.id)
                .bind(a.version)
                .bind(a.archived_at.is_some())
                .bind(&body)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if a.version != expected_version {
                    sqlx::query("INSERT INTO agent_versions (tenant_id, agent_id, version, body) VALUES ($1, $2, $3, $4)")
                        .bind(tenant.as_str())
                        .bind(&a.id)
                        .bind(a.version)
                        .bind(&body)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn list_agents(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<Agent>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM agents WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                self.list_bodies(qb, q).await
            }

            async fn list_agent_versions(
                &self,
                tenant: &TenantId,
                id: &str,
                below: Option<i64>,
                limit: u32,
            ) -> Result<Vec<Agent>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM agent_versions WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned()).push(" AND agent_id = ").push_bind(id.to_owned());
                if let Some(v) = below {
                    qb.push(" AND version < ").push_bind(v);
                }
                qb.push(" ORDER BY version DESC LIMIT ").push_bind(i64::from(limit));
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                bodies(rows)
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::EnvironmentStore for $store {
            async fn insert_environment(&self, tenant: &TenantId, e: &Environment, is_default: bool) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO environments (tenant_id, id, created_at, updated_at, archived, is_default, body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(tenant.as_str())
                .bind(&e.id)
                .bind(e.created_at.as_micros())
                .bind(e.updated_at.as_micros())
                .bind(e.archived_at.is_some())
                .bind(is_default)
                .bind(encode(e))
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn get_environment(&self, tenant: &TenantId, id: &str) -> Result<Option<Environment>, openma_core::StoreError> {
                self.body("SELECT body FROM environments WHERE tenant_id = $1 AND id = $2", tenant, id).await
            }

            async fn get_default_environment(&self, tenant: &TenantId) -> Result<Option<Environment>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body FROM environments WHERE tenant_id = $1 AND is_default AND NOT archived")
                    .bind(tenant.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                match row {
                    None => Ok(None),
                    Some(r) => decode(&r.try_get::<String, _>(0).map_err($crate::backend_error)?).map(Some),
                }
            }

            async fn update_environment(&self, tenant: &TenantId, e: &Environment, expected: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "UPDATE environments SET updated_at = $3, archived = $4, body = $5 \
                     WHERE tenant_id = $1 AND id = $2 AND updated_at = $6",
                )
                .bind(tenant.as_str())
                .bind(&e.id)
                .bind(e.updated_at.as_micros())
                .bind(e.archived_at.is_some())
                .bind(encode(e))
                .bind(expected.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_environment(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, openma_core::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM environments WHERE tenant_id = $1 AND id = $2 AND NOT EXISTS \
                     (SELECT 1 FROM sessions WHERE tenant_id = $1 AND environment_id = $2 AND status <> 'terminated')",
                )
                .bind(tenant.as_str())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                if done.rows_affected() > 0 {
                    Ok(DeleteOutcome::Deleted)
                } else if self.exists("SELECT 1 FROM environments WHERE tenant_id = $1 AND id = $2", tenant, id).await? {
                    Ok(DeleteOutcome::Refused)
                } else {
                    Ok(DeleteOutcome::NotFound)
                }
            }

            async fn list_environments(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<Environment>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM environments WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                self.list_bodies(qb, q).await
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::VaultStore for $store {
            async fn insert_vault(&self, tenant: &TenantId, v: &Vault) -> Result<(), openma_core::StoreError> {
                sqlx::query("INSERT INTO vaults (tenant_id, id, created_at, updated_at, archived, body) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(tenant.as_str())
                    .bind(&v.id)
                    .bind(v.created_at.as_micros())
                    .bind(v.updated_at.as_micros())
                    .bind(v.archived_at.is_some())
                    .bind(encode(v))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn get_vault(&self, tenant: &TenantId, id: &str) -> Result<Option<Vault>, openma_core::StoreError> {
                self.body("SELECT body FROM vaults WHERE tenant_id = $1 AND id = $2", tenant, id).await
            }

            async fn update_vault(&self, tenant: &TenantId, v: &Vault, expected: Timestamp) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let done = sqlx::query(
                    "UPDATE vaults SET updated_at = $3, archived = $4, body = $5 WHERE tenant_id = $1 AND id = $2 AND updated_at = $6",
                )
                .bind(tenant.as_str())
                .bind(&v.id)
                .bind(v.updated_at.as_micros())
                .bind(v.archived_at.is_some())
                .bind(encode(v))
                .bind(expected.as_micros())
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if let Some(at) = v.archived_at {
                    // archiving cascades: credentials are archived and their secrets purged
                    let rows = sqlx::query("SELECT body, unique_key, secrets FROM credentials WHERE tenant_id = $1 AND vault_id = $2 AND NOT archived")
                        .bind(tenant.as_str())
                        .bind(&v.id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err($crate::backend_error)?;
                    for r in &rows {
                        let mut c = stored_credential(r)?;
                        c.credential.archived_at = Some(at);
                        c.credential.updated_at = at;
                        sqlx::query("UPDATE credentials SET archived = TRUE, updated_at = $3, body = $4, secrets = '{}' WHERE tenant_id = $1 AND id = $2")
                            .bind(tenant.as_str())
                            .bind(&c.credential.id)
                            .bind(at.as_micros())
                            .bind(encode(&c.credential))
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::backend_error)?;
                    }
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn delete_vault(&self, tenant: &TenantId, id: &str) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                sqlx::query("DELETE FROM credentials WHERE tenant_id = $1 AND vault_id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                let done = sqlx::query("DELETE FROM vaults WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_vaults(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<Vault>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM vaults WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                self.list_bodies(qb, q).await
            }

            async fn insert_credential(&self, tenant: &TenantId, c: &StoredCredential, max_active: i64) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                // the insert comes first so SQLite takes its write lock before the count
                sqlx::query(
                    "INSERT INTO credentials (tenant_id, vault_id, id, created_at, updated_at, archived, unique_key, body, secrets) \
                     VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, $8)",
                )
                .bind(tenant.as_str())
                .bind(&c.credential.vault_id)
                .bind(&c.credential.id)
                .bind(c.credential.created_at.as_micros())
                .bind(c.credential.updated_at.as_micros())
                .bind(&c.unique_key)
                .bind(encode(&c.credential))
                .bind(encode(&c.secrets))
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE tenant_id = $1 AND vault_id = $2 AND NOT archived")
                    .bind(tenant.as_str())
                    .bind(&c.credential.vault_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if active > max_active {
                    return Ok(false);
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn get_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> Result<Option<StoredCredential>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body, unique_key, secrets FROM credentials WHERE tenant_id = $1 AND vault_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(vault_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(stored_credential).transpose()
            }

            async fn update_credential(&self, tenant: &TenantId, c: &StoredCredential, expected: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "UPDATE credentials SET updated_at = $3, archived = $4, body = $5, secrets = $6 \
                     WHERE tenant_id = $1 AND id = $2 AND updated_at = $7",
                )
                .bind(tenant.as_str())
                .bind(&c.credential.id)
                .bind(c.credential.updated_at.as_micros())
                .bind(c.credential.archived_at.is_some())
                .bind(encode(&c.credential))
                .bind(encode(&c.secrets))
                .bind(expected.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query("DELETE FROM credentials WHERE tenant_id = $1 AND vault_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(vault_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, q: &ListQuery) -> Result<Vec<StoredCredential>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body, unique_key, secrets FROM credentials WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned()).push(" AND vault_id = ").push_bind(vault_id.to_owned());
                push_page(&mut qb, q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(stored_credential).collect()
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::MemoryStorage for $store {
            async fn insert_memory_store(&self, tenant: &TenantId, m: &MemoryStore) -> Result<(), openma_core::StoreError> {
                sqlx::query("INSERT INTO memory_stores (tenant_id, id, created_at, updated_at, archived, body) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(tenant.as_str())
                    .bind(&m.id)
                    .bind(m.created_at.as_micros())
                    .bind(m.updated_at.as_micros())
                    .bind(m.archived_at.is_some())
                    .bind(encode(m))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> Result<Option<MemoryStore>, openma_core::StoreError> {
                self.body("SELECT body FROM memory_stores WHERE tenant_id = $1 AND id = $2", tenant, id).await
            }

            async fn update_memory_store(&self, tenant: &TenantId, m: &MemoryStore, expected: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "UPDATE memory_stores SET updated_at = $3, archived = $4, body = $5 WHERE tenant_id = $1 AND id = $2 AND updated_at = $6",
                )
                .bind(tenant.as_str())
                .bind(&m.id)
                .bind(m.updated_at.as_micros())
                .bind(m.archived_at.is_some())
                .bind(encode(m))
                .bind(expected.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_memory_store(&self, tenant: &TenantId, id: &str) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let done = sqlx::query("DELETE FROM memory_stores WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                for sql in ["DELETE FROM memory_versions WHERE tenant_id = $1 AND store_id = $2", "DELETE FROM memories WHERE tenant_id = $1 AND store_id = $2"] {
                    sqlx::query(sql).bind(tenant.as_str()).bind(id).execute(&mut *tx).await.map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_memory_stores(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<MemoryStore>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM memory_stores WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                self.list_bodies(qb, q).await
            }

            async fn insert_memory(&self, tenant: &TenantId, m: &Memory, v: &MemoryVersion, max: i64) -> Result<MemoryWrite, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                if !hold_open_store(&mut *tx, tenant, &m.memory_store_id).await? {
                    return Ok(MemoryWrite::StoreClosed);
                }
                let inserted = sqlx::query(
                    "INSERT INTO memories (tenant_id, store_id, id, path, content, content_sha256, content_size, version_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(tenant.as_str())
                .bind(&m.memory_store_id)
                .bind(&m.id)
                .bind(&m.path)
                .bind(m.content.as_deref().unwrap_or_default().as_bytes().to_vec())
                .bind(&m.content_sha256)
                .bind(m.content_size_bytes)
                .bind(&m.memory_version_id)
                .bind(m.created_at.as_micros())
                .bind(m.updated_at.as_micros())
                .execute(&mut *tx)
                .await;
                match inserted.map_err($crate::backend_error) {
                    Ok(_) => {}
                    Err(openma_core::StoreError::Duplicate(_)) => {
                        drop(tx);
                        return self.path_holder(tenant, &m.memory_store_id, &m.path).await;
                    }
                    Err(e) => return Err(e),
                }
                let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memories WHERE tenant_id = $1 AND store_id = $2")
                    .bind(tenant.as_str())
                    .bind(&m.memory_store_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if live > max {
                    return Ok(MemoryWrite::StoreFull);
                }
                insert_memory_version(&mut *tx, tenant, v).await?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(MemoryWrite::Done)
            }

            async fn get_memory(&self, tenant: &TenantId, store_id: &str, id: &str) -> Result<Option<Memory>, openma_core::StoreError> {
                let sql = format!("SELECT {MEMORY_COLUMNS}, content FROM memories WHERE tenant_id = $1 AND store_id = $2 AND id = $3");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(store_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(|r| memory_from_row(r, true)).transpose()
            }

            async fn update_memory(&self, tenant: &TenantId, m: &Memory, v: &MemoryVersion, expected_version: &str) -> Result<MemoryWrite, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                if !hold_open_store(&mut *tx, tenant, &m.memory_store_id).await? {
                    return Ok(MemoryWrite::StoreClosed);
                }
                let updated = sqlx::query(
                    "UPDATE memories SET path = $4, content = $5, content_sha256 = $6, content_size = $7, version_id = $8, updated_at = $9 \
                     WHERE tenant_id = $1 AND store_id = $2 AND id = $3 AND version_id = $10",
                )
                .bind(tenant.as_str())
                .bind(&m.memory_store_id)
                .bind(&m.id)
                .bind(&m.path)
                .bind(m.content.as_deref().unwrap_or_default().as_bytes().to_vec())
                .bind(&m.content_sha256)
                .bind(m.content_size_bytes)
                .bind(&m.memory_version_id)
                .bind(m.updated_at.as_micros())
                .bind(expected_version)
                .execute(&mut *tx)
                .await;
                match updated.map_err($crate::backend_error) {
                    Ok(done) if done.rows_affected() == 0 => return Ok(MemoryWrite::Stale),
                    Ok(_) => {}
                    Err(openma_core::StoreError::Duplicate(_)) => {
                        drop(tx);
                        return self.path_holder(tenant, &m.memory_store_id, &m.path).await;
                    }
                    Err(e) => return Err(e),
                }
                insert_memory_version(&mut *tx, tenant, v).await?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(MemoryWrite::Done)
            }

            async fn delete_memory(&self, tenant: &TenantId, v: &MemoryVersion, expected_version: &str) -> Result<MemoryWrite, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                if !hold_open_store(&mut *tx, tenant, &v.memory_store_id).await? {
                    return Ok(MemoryWrite::StoreClosed);
                }
                let done = sqlx::query("DELETE FROM memories WHERE tenant_id = $1 AND store_id = $2 AND id = $3 AND version_id = $4")
                    .bind(tenant.as_str())
                    .bind(&v.memory_store_id)
                    .bind(&v.memory_id)
                    .bind(expected_version)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if done.rows_affected() == 0 {
                    return Ok(MemoryWrite::Stale);
                }
                insert_memory_version(&mut *tx, tenant, v).await?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(MemoryWrite::Done)
            }

            async fn list_memories(
                &self,
                tenant: &TenantId,
                store_id: &str,
                prefix: &str,
                bound: Option<&ListBound>,
                limit: u32,
                with_content: bool,
            ) -> Result<Vec<Memory>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT ");
                qb.push(MEMORY_COLUMNS).push(if with_content { ", content" } else { "" });
                qb.push(" FROM memories WHERE tenant_id = ").push_bind(tenant.as_str().to_owned());
                qb.push(" AND store_id = ").push_bind(store_id.to_owned());
                // the prefix ends with `/`: its paths lie in [prefix, prefix with `/` → `0`)
                let mut upper = prefix[..prefix.len() - 1].to_owned();
                upper.push('0');
                qb.push(" AND path >= ").push_bind(prefix.to_owned()).push(" AND path < ").push_bind(upper);
                match bound {
                    None => {}
                    Some(ListBound::After(p)) => {
                        qb.push(" AND path > ").push_bind(p.clone());
                    }
                    Some(ListBound::From(p)) => {
                        qb.push(" AND path >= ").push_bind(p.clone());
                    }
                }
                qb.push(" ORDER BY path LIMIT ").push_bind(i64::from(limit));
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(|r| memory_from_row(r, with_content)).collect()
            }

            async fn get_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str) -> Result<Option<MemoryVersion>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body, content FROM memory_versions WHERE tenant_id = $1 AND store_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(store_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(|r| version_from_row(r, true)).transpose()
            }

            async fn list_memory_versions(
                &self,
                tenant: &TenantId,
                store_id: &str,
                f: &VersionFilter,
                q: &ListQuery,
                with_content: bool,
            ) -> Result<Vec<MemoryVersion>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new(if with_content { "SELECT body, content" } else { "SELECT body" });
                qb.push(" FROM memory_versions WHERE tenant_id = ").push_bind(tenant.as_str().to_owned());
                qb.push(" AND store_id = ").push_bind(store_id.to_owned());
                if let Some(m) = &f.memory_id {
                    qb.push(" AND memory_id = ").push_bind(m.clone());
                }
                if let Some(op) = f.operation {
                    qb.push(" AND operation = ").push_bind(op.as_str());
                }
                for (kind, id) in [("api_actor", &f.api_key_id), ("session_actor", &f.session_id), ("service_account_actor", &f.service_account_id)] {
                    if let Some(id) = id {
                        qb.push(" AND actor_type = ").push_bind(kind).push(" AND actor_id = ").push_bind(id.clone());
                    }
                }
                let q = ListQuery { include_archived: true, ..q.clone() };
                push_page(&mut qb, &q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(|r| version_from_row(r, with_content)).collect()
            }

            async fn redact_memory_version(&self, tenant: &TenantId, v: &MemoryVersion) -> Result<bool, openma_core::StoreError> {
                let body = MemoryVersion { content: None, ..v.clone() };
                let done = sqlx::query("UPDATE memory_versions SET content = NULL, body = $4 WHERE tenant_id = $1 AND store_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(&v.memory_store_id)
                    .bind(&v.id)
                    .bind(encode(&body))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::ModelCardStore for $store {
            async fn insert_model_card(&self, tenant: &TenantId, c: &openma_core::model_cards::StoredModelCard, max_active: i64) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                // the insert comes first so SQLite takes its write lock before the count
                sqlx::query(
                    "INSERT INTO model_cards (tenant_id, id, created_at, updated_at, archived, is_default, body, sealed_key) \
                     VALUES ($1, $2, $3, $4, FALSE, $5, $6, $7)",
                )
                .bind(tenant.as_str())
                .bind(&c.card.id)
                .bind(c.card.created_at.as_micros())
                .bind(c.card.updated_at.as_micros())
                .bind(c.card.is_default)
                .bind(encode(&c.card))
                .bind(c.sealed_key.as_deref())
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM model_cards WHERE tenant_id = $1 AND NOT archived")
                    .bind(tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if active > max_active {
                    return Ok(false);
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn get_model_card(&self, tenant: &TenantId, id: &str) -> Result<Option<openma_core::model_cards::StoredModelCard>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body, sealed_key FROM model_cards WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(stored_model_card).transpose()
            }

            async fn update_model_card(&self, tenant: &TenantId, c: &openma_core::model_cards::StoredModelCard, expected: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "UPDATE model_cards SET updated_at = $3, archived = $4, is_default = $5, body = $6, sealed_key = $7 \
                     WHERE tenant_id = $1 AND id = $2 AND updated_at = $8",
                )
                .bind(tenant.as_str())
                .bind(&c.card.id)
                .bind(c.card.updated_at.as_micros())
                .bind(c.card.archived_at.is_some())
                .bind(c.card.is_default)
                .bind(encode(&c.card))
                .bind(c.sealed_key.as_deref())
                .bind(expected.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_model_card(&self, tenant: &TenantId, id: &str) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query("DELETE FROM model_cards WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_model_cards(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<openma_core::model_cards::StoredModelCard>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body, sealed_key FROM model_cards WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                push_page(&mut qb, q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(stored_model_card).collect()
            }

            async fn active_model_cards(&self, tenant: &TenantId) -> Result<Vec<openma_core::model_cards::StoredModelCard>, openma_core::StoreError> {
                let rows = sqlx::query(
                    "SELECT body, sealed_key FROM model_cards WHERE tenant_id = $1 AND NOT archived ORDER BY created_at ASC, id ASC",
                )
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                rows.iter().map(stored_model_card).collect()
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::IntegrationStore for $store {
            async fn insert_integration(&self, tenant: &TenantId, i: &openma_core::integrations::StoredIntegration) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO integrations (tenant_id, id, created_at, updated_at, body, sealed_signing_secret, sealed_credential) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(tenant.as_str())
                .bind(&i.integration.id)
                .bind(i.integration.created_at.as_micros())
                .bind(i.integration.updated_at.as_micros())
                .bind(encode(&i.integration))
                .bind(&i.sealed_signing_secret)
                .bind(&i.sealed_credential)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn get_integration(&self, tenant: &TenantId, id: &str) -> Result<Option<openma_core::integrations::StoredIntegration>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body, sealed_signing_secret, sealed_credential FROM integrations WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(stored_integration).transpose()
            }

            async fn find_integration(&self, id: &str) -> Result<Option<(TenantId, openma_core::integrations::StoredIntegration)>, openma_core::StoreError> {
                let row = sqlx::query("SELECT tenant_id, body, sealed_signing_secret, sealed_credential FROM integrations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                match row {
                    Some(r) => {
                        let tenant: String = r.try_get("tenant_id").map_err($crate::backend_error)?;
                        Ok(Some((TenantId::from_trusted(tenant), stored_integration(&r)?)))
                    }
                    None => Ok(None),
                }
            }

            async fn list_integrations(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<openma_core::integrations::StoredIntegration>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body, sealed_signing_secret, sealed_credential FROM integrations WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                push_page(&mut qb, q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(stored_integration).collect()
            }

            async fn reseal_integration(&self, tenant: &TenantId, i: &openma_core::integrations::StoredIntegration) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query("UPDATE integrations SET sealed_signing_secret = $3, sealed_credential = $4 WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(&i.integration.id)
                    .bind(&i.sealed_signing_secret)
                    .bind(&i.sealed_credential)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_integration(&self, tenant: &TenantId, id: &str) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let done = sqlx::query("DELETE FROM integrations WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                for table in ["integration_threads", "integration_deliveries"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE integration_id = $1")))
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn bind_integration_thread(&self, tenant: &TenantId, integration_id: &str, thread: &str, session_id: &str, at: Timestamp) -> Result<String, openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO integration_threads (tenant_id, integration_id, thread, session_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (integration_id, thread) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(integration_id)
                .bind(thread)
                .bind(session_id)
                .bind(at.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                self.integration_thread_session(integration_id, thread)
                    .await?
                    .ok_or_else(|| openma_core::StoreError::Backend("a thread binding vanished".into()))
            }

            async fn integration_thread_session(&self, integration_id: &str, thread: &str) -> Result<Option<String>, openma_core::StoreError> {
                sqlx::query_scalar("SELECT session_id FROM integration_threads WHERE integration_id = $1 AND thread = $2")
                    .bind(integration_id)
                    .bind(thread)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)
            }

            async fn session_integration_thread(&self, session_id: &str) -> Result<Option<(String, String)>, openma_core::StoreError> {
                let row = sqlx::query("SELECT integration_id, thread FROM integration_threads WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                match row {
                    Some(r) => Ok(Some((r.try_get("integration_id").map_err($crate::backend_error)?, r.try_get("thread").map_err($crate::backend_error)?))),
                    None => Ok(None),
                }
            }

            async fn record_integration_delivery(&self, integration_id: &str, delivery_id: &str, at: Timestamp) -> Result<bool, openma_core::StoreError> {
                let done = sqlx::query(
                    "INSERT INTO integration_deliveries (integration_id, delivery_id, received_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (integration_id, delivery_id) DO NOTHING",
                )
                .bind(integration_id)
                .bind(delivery_id)
                .bind(at.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::LedgerStore for $store {
            async fn insert_ledger(&self, tenant: &TenantId, ledger: &[openma_core::ledger::LedgerEntry]) -> Result<u64, openma_core::StoreError> {
                if ledger.is_empty() {
                    return Ok(0);
                }
                let done = ledger_insert(tenant, ledger).build().execute(&self.pool).await.map_err($crate::backend_error)?;
                Ok(done.rows_affected())
            }

            async fn usage_report(&self, tenant: &TenantId, q: &UsageQuery) -> Result<Vec<UsageRow>, openma_core::StoreError> {
                let cols: Vec<&str> = q.group_by.iter().map(|g| g.column()).collect();
                let mut qb = QueryBuilder::<$db>::new("SELECT ");
                for c in &cols {
                    qb.push(*c).push(", ");
                }
                qb.push("CAST(SUM(quantity) AS BIGINT), CAST(SUM(amount) AS BIGINT) FROM ledger_entries WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                if let Some(from) = q.from {
                    qb.push(" AND created_at >= ").push_bind(from);
                }
                if let Some(to) = q.to {
                    qb.push(" AND created_at < ").push_bind(to);
                }
                if !cols.is_empty() {
                    qb.push(" GROUP BY ").push(cols.join(", ")).push(" ORDER BY ").push(cols.join(", "));
                }
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| {
                        let mut out = UsageRow::default();
                        for (i, g) in q.group_by.iter().enumerate() {
                            match g {
                                UsageGroup::Day => out.day = Some(r.try_get::<i64, _>(i).map_err($crate::backend_error)?),
                                other => {
                                    let v: String = r.try_get(i).map_err($crate::backend_error)?;
                                    match other {
                                        UsageGroup::Agent => out.agent_id = Some(v),
                                        UsageGroup::Session => out.session_id = Some(v),
                                        UsageGroup::Model => out.model = Some(v),
                                        _ => out.kind = Some(v),
                                    }
                                }
                            }
                        }
                        let n = q.group_by.len();
                        out.quantity = r.try_get::<Option<i64>, _>(n).map_err($crate::backend_error)?.unwrap_or(0);
                        out.amount_micros = r.try_get::<Option<i64>, _>(n + 1).map_err($crate::backend_error)?.unwrap_or(0);
                        Ok(out)
                    })
                    .collect()
            }
            async fn ledger_after(
                &self,
                tenant: &TenantId,
                after: i64,
                settled_before: i64,
                limit: u32,
            ) -> Result<Vec<(i64, openma_core::ledger::LedgerEntry)>, openma_core::StoreError> {
                let rows = sqlx::query(
                    "SELECT seq, id, session_id, agent_id, model, kind, quantity, unit_price, amount, currency, source, created_at \
                     FROM ledger_entries WHERE tenant_id = $1 AND seq > $2 AND created_at < $3 ORDER BY seq LIMIT $4",
                )
                .bind(tenant.as_str())
                .bind(after)
                .bind(settled_before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| {
                        let e = openma_core::ledger::LedgerEntry {
                            id: r.try_get("id")?,
                            session_id: r.try_get("session_id")?,
                            agent_id: r.try_get("agent_id")?,
                            model: r.try_get("model")?,
                            kind: r.try_get("kind")?,
                            quantity: r.try_get("quantity")?,
                            unit_price: r.try_get("unit_price")?,
                            amount: r.try_get("amount")?,
                            currency: r.try_get("currency")?,
                            source: r.try_get("source")?,
                            created_at: Timestamp::from_micros(r.try_get("created_at")?),
                        };
                        Ok((r.try_get::<i64, _>("seq")?, e))
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err($crate::backend_error)
            }

            async fn export_acknowledged(&self, tenant: &TenantId) -> Result<i64, openma_core::StoreError> {
                let stored = openma_core::Store::get_meta(self, &export_ack_key(tenant)).await?;
                Ok(stored.and_then(|v| v.parse().ok()).unwrap_or(0))
            }

            async fn set_export_acknowledged(&self, tenant: &TenantId, seq: i64) -> Result<(), openma_core::StoreError> {
                openma_core::Store::put_meta(self, &export_ack_key(tenant), &seq.to_string(), false).await.map(|_| ())
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::FileStore for $store {
            async fn insert_file(&self, tenant: &TenantId, f: &StoredFile) -> Result<(), openma_core::StoreError> {
                Self::insert_file_row(&self.pool, tenant, f).await
            }

            async fn insert_scoped_file(&self, tenant: &TenantId, f: &StoredFile, max: i64) -> Result<bool, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                // the insert comes first so SQLite takes its write lock before the count
                Self::insert_file_row(&mut *tx, tenant, f).await?;
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files WHERE tenant_id = $1 AND scope_id = $2 AND origin = $3")
                    .bind(tenant.as_str())
                    .bind(f.scope_id())
                    .bind(f.origin.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                if n > max {
                    return Ok(false);
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            async fn get_file(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredFile>, openma_core::StoreError> {
                let row = sqlx::query("SELECT body, blob_key, sha256, origin, path, purged FROM files WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.as_ref().map(stored_file).transpose()
            }

            async fn list_files(&self, tenant: &TenantId, q: &ListQuery, scope: Option<&str>) -> Result<Vec<StoredFile>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new(format!("SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = "));
                qb.push_bind(tenant.as_str().to_owned());
                match scope {
                    Some(s) => qb.push(" AND scope_id = ").push_bind(s.to_owned()),
                    None => qb.push(" AND scope_id IS NULL"),
                };
                push_page(&mut qb, q);
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(stored_file).collect()
            }

            async fn get_files(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<StoredFile>, openma_core::StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb = QueryBuilder::<$db>::new(format!("SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = "));
                qb.push_bind(tenant.as_str().to_owned()).push(" AND id");
                push_in(&mut qb, ids.iter().map(String::as_str));
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(stored_file).collect()
            }

            async fn delete_file(&self, tenant: &TenantId, id: &str) -> Result<Option<Option<String>>, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let key: Option<String> = sqlx::query_scalar("DELETE FROM files WHERE tenant_id = $1 AND id = $2 RETURNING blob_key")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                let Some(key) = key else { return Ok(None) };
                let orphan = if blob_in_use(&mut *tx, &key).await? { None } else { Some(key) };
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(Some(orphan))
            }

            async fn delete_scoped_files(&self, tenant: &TenantId, session_id: &str) -> Result<Vec<String>, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let keys: Vec<String> = sqlx::query_scalar("DELETE FROM files WHERE tenant_id = $1 AND scope_id = $2 RETURNING blob_key")
                    .bind(tenant.as_str())
                    .bind(session_id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                let mut orphans: Vec<String> = Vec::new();
                for key in keys {
                    if !orphans.contains(&key) && !blob_in_use(&mut *tx, &key).await? {
                        orphans.push(key);
                    }
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(orphans)
            }

            async fn expired_files(&self, now: Timestamp, limit: u32) -> Result<Vec<(TenantId, StoredFile)>, openma_core::StoreError> {
                let rows = sqlx::query(
                    "SELECT tenant_id, body, blob_key, sha256, origin, path, purged FROM files \
                     WHERE expires_at IS NOT NULL AND NOT purged AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                )
                .bind(now.as_micros())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| Ok((TenantId::from_trusted(r.try_get::<String, _>("tenant_id").map_err($crate::backend_error)?), stored_file(r)?)))
                    .collect()
            }

            async fn stored_files(&self, tenant: &TenantId, before: Timestamp) -> Result<Vec<StoredFile>, openma_core::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = $1 AND created_at < $2 AND NOT purged AND origin <> 'mount' ORDER BY created_at, id"
                )))
                .bind(tenant.as_str())
                .bind(before.as_micros())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                rows.iter().map(stored_file).collect()
            }

            async fn purge_file_blob(&self, tenant: &TenantId, id: &str) -> Result<Option<String>, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let key: Option<String> = sqlx::query_scalar("UPDATE files SET purged = TRUE WHERE tenant_id = $1 AND id = $2 AND NOT purged RETURNING blob_key")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                let Some(key) = key else { return Ok(None) };
                let orphan = if blob_in_use(&mut *tx, &key).await? { None } else { Some(key) };
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(orphan)
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::SessionStore for $store {
            async fn count_running_sessions(&self, tenant: &TenantId) -> Result<i64, openma_core::StoreError> {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions WHERE tenant_id = $1 AND status IN ('running', 'rescheduling')")
                    .bind(tenant.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::backend_error)
            }

            async fn insert_session(&self, tenant: &TenantId, s: &Session) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO sessions (tenant_id, id, agent_id, agent_version, environment_id, status, created_at, updated_at, archived, body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(tenant.as_str())
                .bind(&s.id)
                .bind(&s.agent.id)
                .bind(s.agent.version)
                .bind(&s.environment_id)
                .bind(s.status.as_str())
                .bind(s.created_at.as_micros())
                .bind(s.updated_at.as_micros())
                .bind(s.archived_at.is_some())
                .bind(encode(s))
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn get_session(&self, tenant: &TenantId, id: &str) -> Result<Option<Session>, openma_core::StoreError> {
                self.body("SELECT body FROM sessions WHERE tenant_id = $1 AND id = $2", tenant, id).await
            }

            async fn update_session(&self, tenant: &TenantId, s: &Session, expected: Timestamp) -> Result<bool, openma_core::StoreError> {
                write_session_row(&self.pool, tenant, s, expected).await
            }

            async fn delete_session(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, openma_core::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM sessions WHERE tenant_id = $1 AND id = $2 AND status NOT IN ('running', 'rescheduling')",
                )
                .bind(tenant.as_str())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                if done.rows_affected() > 0 {
                    sqlx::query("DELETE FROM session_leases WHERE session_id = $1").bind(id).execute(&self.pool).await.map_err($crate::backend_error)?;
                    Ok(DeleteOutcome::Deleted)
                } else if self.exists("SELECT 1 FROM sessions WHERE tenant_id = $1 AND id = $2", tenant, id).await? {
                    Ok(DeleteOutcome::Refused)
                } else {
                    Ok(DeleteOutcome::NotFound)
                }
            }

            async fn list_sessions(&self, tenant: &TenantId, q: &ListQuery, f: &SessionFilter) -> Result<Vec<Session>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM sessions WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned());
                if let Some(agent) = &f.agent_id {
                    qb.push(" AND agent_id = ").push_bind(agent.clone());
                    if let Some(v) = f.agent_version {
                        qb.push(" AND agent_version = ").push_bind(v);
                    }
                }
                if !f.statuses.is_empty() {
                    qb.push(" AND status");
                    push_in(&mut qb, f.statuses.iter().map(|s| s.as_str()));
                }
                self.list_bodies(qb, q).await
            }
        }

        #[async_trait::async_trait]
        impl openma_core::ports::AccountStore for $store {
            async fn insert_user(&self, u: &openma_core::accounts::User) -> Result<(), openma_core::StoreError> {
                sqlx::query("INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
                    .bind(&u.id)
                    .bind(&u.email)
                    .bind(&u.password_hash)
                    .bind(u.created_at.as_micros())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn find_user(&self, email: &str) -> Result<Option<openma_core::accounts::User>, openma_core::StoreError> {
                let row = sqlx::query("SELECT id, email, password_hash, created_at FROM users WHERE email = $1")
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.map(|r| -> Result<_, sqlx::Error> {
                    Ok(openma_core::accounts::User {
                        id: r.try_get("id")?,
                        email: r.try_get("email")?,
                        password_hash: r.try_get("password_hash")?,
                        created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    })
                })
                .transpose()
                .map_err($crate::backend_error)
            }

            async fn set_password(&self, user_id: &str, password_hash: &str, at: Timestamp) -> Result<(), openma_core::StoreError> {
                sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                    .bind(user_id)
                    .bind(password_hash)
                    .bind(at.as_micros())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn put_membership(&self, user_id: &str, tenant: &TenantId, role: &str, at: Timestamp) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role",
                )
                .bind(user_id)
                .bind(tenant.as_str())
                .bind(role)
                .bind(at.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn memberships(&self, user_id: &str) -> Result<Vec<(TenantId, String)>, openma_core::StoreError> {
                let rows = sqlx::query("SELECT tenant_id, role FROM memberships WHERE user_id = $1 ORDER BY created_at, tenant_id")
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| Ok((TenantId::from_trusted(r.try_get::<String, _>("tenant_id")?), r.try_get("role")?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err($crate::backend_error)
            }

            async fn insert_console_session(&self, token_hash: &str, user_id: &str, tenant: &TenantId, csrf: &str, at: Timestamp, expires: Timestamp) -> Result<(), openma_core::StoreError> {
                sqlx::query("INSERT INTO console_sessions (token_hash, user_id, tenant_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(token_hash)
                    .bind(user_id)
                    .bind(tenant.as_str())
                    .bind(csrf)
                    .bind(at.as_micros())
                    .bind(expires.as_micros())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn console_session(&self, token_hash: &str) -> Result<Option<openma_core::accounts::ConsoleSession>, openma_core::StoreError> {
                let row = sqlx::query(
                    "SELECT s.user_id, u.email, s.tenant_id, m.role, s.csrf_token, s.expires_at FROM console_sessions s \
                     JOIN users u ON u.id = s.user_id JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id \
                     WHERE s.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                let Some(r) = row else { return Ok(None) };
                let role: String = r.try_get("role").map_err($crate::backend_error)?;
                let Some(role) = openma_core::accounts::Role::parse(&role) else { return Ok(None) };
                Ok(Some(openma_core::accounts::ConsoleSession {
                    user_id: r.try_get("user_id").map_err($crate::backend_error)?,
                    email: r.try_get("email").map_err($crate::backend_error)?,
                    tenant: TenantId::from_trusted(r.try_get::<String, _>("tenant_id").map_err($crate::backend_error)?),
                    role,
                    csrf_token: r.try_get("csrf_token").map_err($crate::backend_error)?,
                    expires_at: Timestamp::from_micros(r.try_get("expires_at").map_err($crate::backend_error)?),
                }))
            }

            async fn delete_console_session(&self, token_hash: &str) -> Result<(), openma_core::StoreError> {
                sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await.map_err($crate::backend_error)?;
                Ok(())
            }

            async fn set_console_session_tenant(&self, token_hash: &str, tenant: &TenantId) -> Result<(), openma_core::StoreError> {
                sqlx::query("UPDATE console_sessions SET tenant_id = $2 WHERE token_hash = $1")
                    .bind(token_hash)
                    .bind(tenant.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn delete_console_sessions_of(&self, user_id: &str) -> Result<(), openma_core::StoreError> {
                sqlx::query("DELETE FROM console_sessions WHERE user_id = $1").bind(user_id).execute(&self.pool).await.map_err($crate::backend_error)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl openma_core::Store for $store {
            async fn describe(&self) -> Result<String, openma_core::StoreError> {
                sqlx::query_scalar::<_, String>($describe)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::backend_error)
            }

            // ---- event log ----

            async fn append_events(
                &self,
                tenant: &TenantId,
                session_id: &str,
                events: &[StoredEvent],
                session: Option<(&Session, Timestamp)>,
                consumed: &[String],
                ledger: &[openma_core::ledger::LedgerEntry],
                fence: Option<&Fence>,
            ) -> Result<Appended, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                if let Some(f) = fence {
                    // a write that locks the lease row until commit: a taking waits for it,
                    // and a lease taken before it leaves nothing to match
                    let held = sqlx::query("UPDATE session_leases SET token = token WHERE session_id = $1 AND node_id = $2 AND token = $3")
                        .bind(session_id)
                        .bind(&f.node_id)
                        .bind(f.token)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_error)?;
                    if held.rows_affected() == 0 {
                        return Ok(Appended::Fenced);
                    }
                }
                if let Some((s, expected)) = session {
                    if !write_session_row(&mut *tx, tenant, s, expected).await? {
                        return Ok(Appended::Stale);
                    }
                }
                let notify: Option<&str> = $notify;
                if let (Some(sql), Some(_), Some(first), Some(last)) = (notify, fence, events.first(), events.last()) {
                    // delivered on commit, so no node hears of events that did not happen
                    sqlx::query(sql)
                        .bind(format!("{} {session_id} {} {}", tenant.as_str(), first.seq, last.seq))
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_error)?;
                }
                if !events.is_empty() {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO events (tenant_id, session_id, seq, id, type, processed_at, body, internal) ",
                    );
                    qb.push_values(events, |mut row, e| {
                        row.push_bind(tenant.as_str().to_owned())
                            .push_bind(session_id.to_owned())
                            .push_bind(e.seq)
                            .push_bind(e.event.id.clone())
                            .push_bind(e.event.payload.kind())
                            .push_bind(e.event.processed_at.map(Timestamp::as_micros).unwrap_or_default())
                            .push_bind(encode(&e.event))
                            .push_bind(e.internal.as_ref().map(encode));
                    });
                    qb.build().execute(&mut *tx).await.map_err($crate::backend_error)?;
                }
                if !ledger.is_empty() {
                    ledger_insert(tenant, ledger).build().execute(&mut *tx).await.map_err($crate::backend_error)?;
                }
                if !consumed.is_empty() {
                    let mut qb = QueryBuilder::<$db>::new("DELETE FROM session_inbox WHERE tenant_id = ");
                    qb.push_bind(tenant.as_str().to_owned()).push(" AND session_id = ").push_bind(session_id.to_owned());
                    qb.push(" AND id");
                    push_in(&mut qb, consumed.iter().map(String::as_str));
                    qb.build().execute(&mut *tx).await.map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(Appended::Done)
            }

            async fn node_heartbeat(&self, node_id: &str, url: &str, now: i64, until: i64, sessions: &[String]) -> Result<(), openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                sqlx::query(
                    "INSERT INTO cluster_nodes (node_id, url, heartbeat_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (node_id) DO UPDATE SET url = excluded.url, heartbeat_at = excluded.heartbeat_at",
                )
                .bind(node_id)
                .bind(url)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_error)?;
                for chunk in sessions.chunks(500) {
                    let mut qb = QueryBuilder::<$db>::new("UPDATE session_leases SET expires_at = ");
                    qb.push_bind(until).push(" WHERE node_id = ").push_bind(node_id.to_owned()).push(" AND session_id");
                    push_in(&mut qb, chunk.iter().map(String::as_str));
                    qb.build().execute(&mut *tx).await.map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(())
            }

            async fn acquire_lease(&self, session_id: &str, node_id: &str, now: i64, until: i64) -> Result<Option<i64>, openma_core::StoreError> {
                let row = sqlx::query(
                    "INSERT INTO session_leases (session_id, node_id, token, expires_at) VALUES ($1, $2, 1, $3) \
                     ON CONFLICT (session_id) DO UPDATE SET node_id = excluded.node_id, token = session_leases.token + 1, \
                     expires_at = excluded.expires_at \
                     WHERE session_leases.expires_at < $4 OR session_leases.node_id = '' OR session_leases.node_id = excluded.node_id \
                     RETURNING token",
                )
                .bind(session_id)
                .bind(node_id)
                .bind(until)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                row.map(|r| r.try_get::<i64, _>("token")).transpose().map_err($crate::backend_error)
            }

            async fn release_lease(&self, session_id: &str, fence: &Fence) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "UPDATE session_leases SET node_id = '', token = token + 1, expires_at = 0 \
                     WHERE session_id = $1 AND node_id = $2 AND token = $3",
                )
                .bind(session_id)
                .bind(&fence.node_id)
                .bind(fence.token)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn release_node(&self, node_id: &str) -> Result<u64, openma_core::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let done = sqlx::query("UPDATE session_leases SET node_id = '', token = token + 1, expires_at = 0 WHERE node_id = $1")
                    .bind(node_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_error)?;
                sqlx::query("DELETE FROM cluster_nodes WHERE node_id = $1").bind(node_id).execute(&mut *tx).await.map_err($crate::backend_error)?;
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(done.rows_affected())
            }

            async fn lease_holder(&self, session_id: &str) -> Result<Option<LeaseHolder>, openma_core::StoreError> {
                let row = sqlx::query(
                    "SELECT l.node_id, l.expires_at, n.url FROM session_leases l JOIN cluster_nodes n ON n.node_id = l.node_id \
                     WHERE l.session_id = $1",
                )
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                row.map(|r| -> Result<LeaseHolder, sqlx::Error> {
                    Ok(LeaseHolder { node_id: r.try_get("node_id")?, url: r.try_get("url")?, expires_at: r.try_get("expires_at")? })
                })
                .transpose()
                .map_err($crate::backend_error)
            }

            async fn orphaned_sessions(&self, now: i64) -> Result<Vec<(TenantId, String)>, openma_core::StoreError> {
                let rows = sqlx::query(
                    "SELECT s.tenant_id, s.id FROM sessions s LEFT JOIN session_leases l ON l.session_id = s.id \
                     WHERE s.status IN ('running', 'rescheduling') AND (l.session_id IS NULL OR l.expires_at < $1)",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| Ok((TenantId::from_trusted(r.try_get::<String, _>("tenant_id")?), r.try_get::<String, _>("id")?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err($crate::backend_error)
            }

            async fn push_inbox(&self, tenant: &TenantId, session_id: &str, entry: &InboxEntry) -> Result<(), openma_core::StoreError> {
                sqlx::query("INSERT INTO session_inbox (tenant_id, session_id, id, accepted_at, body) VALUES ($1, $2, $3, $4, $5)")
                    .bind(tenant.as_str())
                    .bind(session_id)
                    .bind(&entry.event.id)
                    .bind(entry.accepted_at.as_micros())
                    .bind(encode(&entry.event))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn list_inbox(&self, tenant: &TenantId, session_id: &str) -> Result<Vec<InboxEntry>, openma_core::StoreError> {
                let rows = sqlx::query(
                    "SELECT accepted_at, body FROM session_inbox WHERE tenant_id = $1 AND session_id = $2 ORDER BY accepted_at, id",
                )
                .bind(tenant.as_str())
                .bind(session_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| {
                        let body: String = r.try_get("body").map_err($crate::backend_error)?;
                        let at: i64 = r.try_get("accepted_at").map_err($crate::backend_error)?;
                        Ok(InboxEntry { event: decode(&body)?, accepted_at: Timestamp::from_micros(at) })
                    })
                    .collect()
            }

            async fn session_tenant(&self, session_id: &str) -> Result<Option<TenantId>, openma_core::StoreError> {
                let row = sqlx::query("SELECT tenant_id FROM sessions WHERE id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                row.map(|r| r.try_get::<String, _>("tenant_id").map(TenantId::from_trusted).map_err($crate::backend_error)).transpose()
            }

            async fn sessions_to_resume(&self) -> Result<Vec<(TenantId, String)>, openma_core::StoreError> {
                let rows = sqlx::query("SELECT tenant_id, id FROM sessions WHERE status IN ('running', 'rescheduling')")
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            TenantId::from_trusted(r.try_get::<String, _>("tenant_id").map_err($crate::backend_error)?),
                            r.try_get::<String, _>("id").map_err($crate::backend_error)?,
                        ))
                    })
                    .collect()
            }

            async fn list_events(&self, tenant: &TenantId, session_id: &str, q: &EventQuery) -> Result<Vec<StoredEvent>, openma_core::StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT seq, body, internal FROM events WHERE tenant_id = ");
                qb.push_bind(tenant.as_str().to_owned()).push(" AND session_id = ").push_bind(session_id.to_owned());
                if let Some(after) = q.after_seq {
                    qb.push(if q.descending { " AND seq < " } else { " AND seq > " }).push_bind(after);
                }
                if !q.types.is_empty() {
                    qb.push(" AND type");
                    push_in(&mut qb, q.types.iter().map(String::as_str));
                }
                for (op, v) in [(">", q.processed.gt), (">=", q.processed.gte), ("<", q.processed.lt), ("<=", q.processed.lte)] {
                    if let Some(v) = v {
                        qb.push(" AND processed_at ").push(op).push(" ").push_bind(v);
                    }
                }
                qb.push(if q.descending { " ORDER BY seq DESC" } else { " ORDER BY seq ASC" });
                qb.push(" LIMIT ").push_bind(i64::from(q.limit));
                let rows = qb.build().fetch_all(&self.pool).await.map_err($crate::backend_error)?;
                rows.iter().map(stored_event).collect()
            }

            async fn event_seq(&self, tenant: &TenantId, session_id: &str, event_id: &str) -> Result<Option<i64>, openma_core::StoreError> {
                sqlx::query_scalar::<_, i64>("SELECT seq FROM events WHERE tenant_id = $1 AND session_id = $2 AND id = $3")
                    .bind(tenant.as_str())
                    .bind(session_id)
                    .bind(event_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)
            }

            async fn last_event_seq(&self, tenant: &TenantId, session_id: &str) -> Result<i64, openma_core::StoreError> {
                let v = sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM events WHERE tenant_id = $1 AND session_id = $2")
                    .bind(tenant.as_str())
                    .bind(session_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(v.unwrap_or(0))
            }

            // ---- archived event logs ----

            async fn event_log_archive(&self, tenant: &TenantId, session_id: &str) -> Result<Option<openma_core::ports::EventLogArchive>, openma_core::StoreError> {
                let row = sqlx::query(
                    "SELECT log_archive_key, log_archived_events, log_archived_seq FROM sessions \
                     WHERE tenant_id = $1 AND id = $2 AND log_archive_key IS NOT NULL",
                )
                .bind(tenant.as_str())
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                row.map(|r| {
                    Ok(openma_core::ports::EventLogArchive {
                        blob_key: r.try_get("log_archive_key").map_err($crate::backend_error)?,
                        events: r.try_get("log_archived_events").map_err($crate::backend_error)?,
                        last_seq: r.try_get("log_archived_seq").map_err($crate::backend_error)?,
                    })
                })
                .transpose()
            }

            async fn sessions_to_archive(&self, idle_before: Option<Timestamp>, limit: u32) -> Result<Vec<(TenantId, String, Timestamp)>, openma_core::StoreError> {
                let rows = sqlx::query(
                    "SELECT tenant_id, id, updated_at FROM sessions s \
                     WHERE status NOT IN ('running', 'rescheduling') AND (archived OR updated_at < $1) \
                     AND (log_checked_at IS NULL OR log_checked_at <> updated_at) \
                     AND NOT EXISTS (SELECT 1 FROM session_inbox i WHERE i.tenant_id = s.tenant_id AND i.session_id = s.id) \
                     ORDER BY updated_at, id LIMIT $2",
                )
                .bind(idle_before.map_or(i64::MIN, Timestamp::as_micros))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            TenantId::from_trusted(r.try_get::<String, _>("tenant_id").map_err($crate::backend_error)?),
                            r.try_get::<String, _>("id").map_err($crate::backend_error)?,
                            Timestamp::from_micros(r.try_get("updated_at").map_err($crate::backend_error)?),
                        ))
                    })
                    .collect()
            }

            async fn archive_event_log(
                &self,
                tenant: &TenantId,
                session_id: &str,
                archive: Option<&openma_core::ports::EventLogArchive>,
                seen: Timestamp,
            ) -> Result<bool, openma_core::StoreError> {
                // both statements are guarded alike: never a running session, nor one with inbox entries
                let mut tx = self.pool.begin().await.map_err($crate::backend_error)?;
                let done = match archive {
                    Some(a) => sqlx::query(
                        "UPDATE sessions SET log_archive_key = $3, log_archived_events = $4, log_archived_seq = $5, log_checked_at = $6 \
                         WHERE tenant_id = $1 AND id = $2 AND status NOT IN ('running', 'rescheduling') \
                         AND NOT EXISTS (SELECT 1 FROM session_inbox i WHERE i.tenant_id = $1 AND i.session_id = $2)",
                    )
                    .bind(tenant.as_str())
                    .bind(session_id)
                    .bind(&a.blob_key)
                    .bind(a.events)
                    .bind(a.last_seq)
                    .bind(seen.as_micros())
                    .execute(&mut *tx)
                    .await,
                    None => sqlx::query(
                        "UPDATE sessions SET log_checked_at = $3 \
                         WHERE tenant_id = $1 AND id = $2 AND status NOT IN ('running', 'rescheduling') \
                         AND NOT EXISTS (SELECT 1 FROM session_inbox i WHERE i.tenant_id = $1 AND i.session_id = $2)",
                    )
                        .bind(tenant.as_str())
                        .bind(session_id)
                        .bind(seen.as_micros())
                        .execute(&mut *tx)
                        .await,
                }
                .map_err($crate::backend_error)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if let Some(a) = archive {
                    sqlx::query("DELETE FROM events WHERE tenant_id = $1 AND session_id = $2 AND seq <= $3")
                        .bind(tenant.as_str())
                        .bind(session_id)
                        .bind(a.last_seq)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_error)?;
                }
                tx.commit().await.map_err($crate::backend_error)?;
                Ok(true)
            }

            // ---- the cluster's scheduler ----

            async fn claim_scheduled_job(
                &self,
                name: &str,
                node: &str,
                now: Timestamp,
                next_run_at: Timestamp,
                locked_until: Timestamp,
            ) -> Result<bool, openma_core::StoreError> {
                sqlx::query("INSERT INTO scheduled_jobs (name, next_run_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(now.as_micros())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                let done = sqlx::query(
                    "UPDATE scheduled_jobs SET locked_by = $2, locked_until = $3, next_run_at = $4 \
                     WHERE name = $1 AND next_run_at <= $5 AND (locked_until IS NULL OR locked_until < $5)",
                )
                .bind(name)
                .bind(node)
                .bind(locked_until.as_micros())
                .bind(next_run_at.as_micros())
                .bind(now.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_scheduled_job(&self, name: &str, node: &str, now: Timestamp, error: Option<&str>) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "UPDATE scheduled_jobs SET locked_by = NULL, locked_until = NULL, last_run_at = $3, last_error = $4 \
                     WHERE name = $1 AND locked_by = $2",
                )
                .bind(name)
                .bind(node)
                .bind(now.as_micros())
                .bind(error)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            // ---- retention ----

            async fn purge_memory_versions(&self, before: Timestamp, limit: u32) -> Result<u64, openma_core::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM memory_versions WHERE (tenant_id, id) IN ( \
                       SELECT v.tenant_id, v.id FROM memory_versions v WHERE v.created_at < $1 AND EXISTS ( \
                         SELECT 1 FROM memory_versions n WHERE n.tenant_id = v.tenant_id AND n.store_id = v.store_id \
                         AND n.memory_id = v.memory_id AND (n.created_at > v.created_at OR (n.created_at = v.created_at AND n.id > v.id))) \
                       LIMIT $2)",
                )
                .bind(before.as_micros())
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected())
            }

            async fn purge_webhook_deliveries(&self, before: Timestamp, limit: u32) -> Result<u64, openma_core::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE (tenant_id, id) IN ( \
                       SELECT tenant_id, id FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < $1 LIMIT $2)",
                )
                .bind(before.as_micros())
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(done.rows_affected())
            }
            async fn get_meta(&self, key: &str) -> Result<Option<String>, openma_core::StoreError> {
                sqlx::query_scalar::<_, String>("SELECT value FROM platform_meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)
            }

            async fn put_meta(&self, key: &str, value: &str, only_if_absent: bool) -> Result<bool, openma_core::StoreError> {
                let sql = if only_if_absent {
                    "INSERT INTO platform_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
                } else {
                    "INSERT INTO platform_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                };
                let done = sqlx::query(sql).bind(key).bind(value).execute(&self.pool).await.map_err($crate::backend_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn get_tenant_limits(&self, tenant: &TenantId) -> Result<TenantLimits, openma_core::StoreError> {
                let row = sqlx::query("SELECT monthly_soft_micros, monthly_hard_micros, max_running_sessions, max_running_sandboxes FROM tenant_limits WHERE tenant_id = $1")
                    .bind(tenant.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                let Some(r) = row else { return Ok(TenantLimits::default()) };
                Ok(TenantLimits {
                    monthly_soft_micros: r.try_get(0).map_err($crate::backend_error)?,
                    monthly_hard_micros: r.try_get(1).map_err($crate::backend_error)?,
                    max_running_sessions: r.try_get(2).map_err($crate::backend_error)?,
                    max_running_sandboxes: r.try_get(3).map_err($crate::backend_error)?,
                })
            }

            async fn set_tenant_limits(&self, tenant: &TenantId, l: &TenantLimits) -> Result<(), openma_core::StoreError> {
                sqlx::query(
                    "INSERT INTO tenant_limits (tenant_id, monthly_soft_micros, monthly_hard_micros, max_running_sessions, max_running_sandboxes) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (tenant_id) DO UPDATE SET monthly_soft_micros = excluded.monthly_soft_micros, \
                     monthly_hard_micros = excluded.monthly_hard_micros, max_running_sessions = excluded.max_running_sessions, \
                     max_running_sandboxes = excluded.max_running_sandboxes",
                )
                .bind(tenant.as_str())
                .bind(l.monthly_soft_micros)
                .bind(l.monthly_hard_micros)
                .bind(l.max_running_sessions)
                .bind(l.max_running_sandboxes)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn claim_idempotency(
                &self,
                tenant: &TenantId,
                key: &str,
                request_hash: &str,
                now: Timestamp,
                expired_before: Timestamp,
            ) -> Result<IdempotencyClaim, openma_core::StoreError> {
                sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created_at < $3")
                    .bind(tenant.as_str())
                    .bind(key)
                    .bind(expired_before.as_micros())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (tenant_id, key, request_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, key) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(key)
                .bind(request_hash)
                .bind(now.as_micros())
                .execute(&self.pool)
                .await
                .map_err($crate::backend_error)?;
                if inserted.rows_affected() > 0 {
                    return Ok(IdempotencyClaim::New);
                }
                let row = sqlx::query("SELECT request_hash, status, body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant.as_str())
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                let Some(r) = row else { return Ok(IdempotencyClaim::InProgress) };
                let hash: String = r.try_get(0).map_err($crate::backend_error)?;
                if hash != request_hash {
                    return Ok(IdempotencyClaim::Mismatch);
                }
                let status: Option<i64> = r.try_get(1).map_err($crate::backend_error)?;
                let body: Option<String> = r.try_get(2).map_err($crate::backend_error)?;
                Ok(match (status, body) {
                    (Some(s), Some(b)) => IdempotencyClaim::Replay { status: s as u16, body: b },
                    _ => IdempotencyClaim::InProgress,
                })
            }

            async fn complete_idempotency(&self, tenant: &TenantId, key: &str, status: u16, body: &str) -> Result<(), openma_core::StoreError> {
                sqlx::query("UPDATE idempotency_keys SET status = $3, body = $4 WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant.as_str())
                    .bind(key)
                    .bind(i64::from(status))
                    .bind(body)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }

            async fn release_idempotency(&self, tenant: &TenantId, key: &str) -> Result<(), openma_core::StoreError> {
                sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant.as_str())
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_error)?;
                Ok(())
            }
        }
    };
}
