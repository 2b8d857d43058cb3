//! The API behind authentication: a request parsed at the edge with the core's rules
//! (`openma_core::edge`), dispatched by path to one module per resource.

use openma_core::edge;
use serde::Serialize;
use serde::de::DeserializeOwned;
use worker::{Env, Method, Request, Response};

use crate::auth::Caller;
use crate::d1::D1;
use crate::errors::ApiError;

/// An authenticated API request.
pub struct ApiRequest {
    req: Request,
    /// This request's id, carried to the SessionDO so its errors name it too.
    pub request_id: String,
}

impl ApiRequest {
    pub fn method(&self) -> Method {
        self.req.method()
    }

    /// The JSON body; an empty one reads as `{}`.
    pub async fn body<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let bytes = self.req.bytes().await.map_err(|e| ApiError::new(400, format!("could not read the request body: {e}")))?;
        Ok(edge::json_body(&bytes)?)
    }

    /// The body as it streams in (uploads), never held whole.
    pub fn body_stream(&mut self) -> Result<worker::ByteStream, ApiError> {
        self.req.stream().map_err(|e| ApiError::new(400, format!("could not read the request body: {e}")))
    }

    /// The raw query string (without `?`).
    pub fn raw_query(&self) -> Result<String, ApiError> {
        let url = self.req.url().map_err(|e| ApiError::new(400, format!("invalid URL: {e}")))?;
        Ok(url.query().unwrap_or("").to_owned())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.req.headers().get(name).ok().flatten()
    }

    /// The query string as `T` (unknown parameters ignored).
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let url = self.req.url().map_err(|e| ApiError::new(400, format!("invalid URL: {e}")))?;
        Ok(edge::query(url.query().unwrap_or(""))?)
    }
}

/// A 200 with `value` as JSON.
pub fn json<T: Serialize>(value: T) -> Result<Response, ApiError> {
    Response::from_json(&value).map_err(|e| ApiError::new(500, format!("cannot encode the response: {e}")))
}

/// Serves an authenticated request for `tenant`.
pub async fn serve(req: Request, env: &Env, db: &D1, caller: &Caller, request_id: &str) -> Result<Response, ApiError> {
    let tenant: &openma_core::TenantId = &caller.tenant;
    let path = req.path();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let mut req = ApiRequest { req, request_id: request_id.to_owned() };
    let served = match segments.as_slice() {
        ["v1", "agents", rest @ ..] => crate::agents::route(&mut req, env, db, tenant, rest).await,
        ["v1", "environments", rest @ ..] => crate::environments::route(&mut req, db, tenant, rest).await,
        ["v1", "vaults", rest @ ..] => crate::vaults::route(&mut req, env, db, tenant, rest).await,
        ["v1", "files", rest @ ..] => crate::files::route(&mut req, env, tenant, rest).await,
        ["v1", "skills", rest @ ..] => crate::skills::route(&mut req, env, tenant, rest).await,
        ["v1", "model_cards", rest @ ..] => crate::model_cards::route(&mut req, env, db, tenant, rest).await,
        ["v1", "memory_stores", rest @ ..] => crate::memory::route(&mut req, db, caller, rest).await,
        ["v1", "usage", rest @ ..] => crate::usage::route(&mut req, db, tenant, rest).await,
        ["v1", "integrations", rest @ ..] => crate::integrations::route(&mut req, env, db, tenant, rest).await,
        ["v1", "sessions", rest @ ..] => crate::sessions::route(&mut req, env, db, tenant, rest).await,
        ["v1", "organizations", "webhooks", rest @ ..] => crate::webhooks::route(&mut req, env, db, tenant, rest).await,
        _ => None,
    };
    served.unwrap_or_else(|| Err(ApiError::not_found(format!("no route for {} {path}", req.method()))))
}
