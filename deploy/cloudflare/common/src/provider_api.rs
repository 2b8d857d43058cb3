//! The providers' APIs (Slack's Web API, Linear's GraphQL, GitHub's REST API) over `fetch`:
//! what `openma-integrations` acknowledges deliveries with and a SessionDO posts a turn's
//! answer with. A GitHub App's JWT is signed by Web Crypto.

use openma_core::integrations::ProviderApi;
use openma_core::integrations::turns::truncate;
use serde_json::Value;
use worker::{Fetch, Headers, Method, Request, RequestInit};

pub struct FetchApi;

#[async_trait::async_trait]
impl ProviderApi for FetchApi {
    async fn post_json(&self, url: &str, authorization: &str, body: &Value) -> Result<Value, String> {
        worker::send::SendFuture::new(send(Method::Post, url, authorization, Some(body))).await
    }

    async fn get_json(&self, url: &str, authorization: &str) -> Result<Value, String> {
        worker::send::SendFuture::new(send(Method::Get, url, authorization, None)).await
    }

    async fn sign_rs256(&self, pkcs8_der: &[u8], input: &[u8]) -> Result<Vec<u8>, String> {
        worker::send::SendFuture::new(sign_rs256(pkcs8_der, input)).await
    }
}

async fn send(method: Method, url: &str, authorization: &str, body: Option<&Value>) -> Result<Value, String> {
    let failed = |e: worker::Error| format!("{url}: {e}");
    let headers = Headers::new();
    // GitHub refuses requests without a User-Agent, which `fetch` does not add
    let agent = concat!("openma/", env!("CARGO_PKG_VERSION"));
    for (name, value) in [("authorization", authorization), ("content-type", "application/json"), ("accept", "application/json"), ("user-agent", agent)] {
        headers.set(name, value).map_err(failed)?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(body) = body {
        init.with_body(Some(body.to_string().into()));
    }
    let req = Request::new_with_init(url, &init).map_err(failed)?;
    let mut resp = Fetch::Request(req).send().await.map_err(failed)?;
    let status = resp.status_code();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        return Err(format!("{url} answered {status}: {}", truncate(&answer.to_string(), 300)));
    }
    Ok(answer)
}

/// RSASSA-PKCS1-v1_5 with SHA-256 by Web Crypto (`crypto.subtle`), which the Workers
/// runtime implements natively: no RSA code in the wasm.
async fn sign_rs256(pkcs8_der: &[u8], input: &[u8]) -> Result<Vec<u8>, String> {
    use worker::js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
    use worker::wasm_bindgen::{JsCast, JsValue};
    use worker::wasm_bindgen_futures::JsFuture;
    let js = |e: JsValue| format!("Web Crypto: {}", e.as_string().or_else(|| Reflect::get(&e, &"message".into()).ok()?.as_string()).unwrap_or_else(|| format!("{e:?}")));
    let crypto = Reflect::get(&worker::js_sys::global(), &"crypto".into()).map_err(js)?;
    let subtle = Reflect::get(&crypto, &"subtle".into()).map_err(js)?;
    let call = |name: &str, args: &Array| -> Result<Promise, String> {
        let f: Function = Reflect::get(&subtle, &name.into()).map_err(js)?.dyn_into().map_err(js)?;
        f.apply(&subtle, args).map_err(js)?.dyn_into::<Promise>().map_err(js)
    };
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"RSASSA-PKCS1-v1_5".into()).map_err(js)?;
    Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into()).map_err(js)?;
    let import = Array::of5(&"pkcs8".into(), &Uint8Array::from(pkcs8_der).into(), &algorithm, &JsValue::FALSE, &Array::of1(&"sign".into()));
    let key = JsFuture::from(call("importKey", &import)?).await.map_err(|e| format!("the private key cannot be read: {}", js(e)))?;
    let signature = JsFuture::from(call("sign", &Array::of3(&algorithm, &key, &Uint8Array::from(input).into()))?).await.map_err(js)?;
    Ok(Uint8Array::new(&signature).to_vec())
}
