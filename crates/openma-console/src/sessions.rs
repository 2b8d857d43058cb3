//! Sessions: the list (filtered and searched), one session's live timeline, and starting one.

use maud::html;
use openma_core::accounts::ConsoleSession;
use openma_core::platform::ListParams;
use openma_core::ports::SessionFilter;
use serde::Deserialize;

use crate::layout::*;
use crate::{Backend, Response, csrf_ok};

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf: String,
    agent_id: String,
    #[serde(default)]
    title: String,
}

/// Starts a session with an agent and opens its page.
pub async fn start(b: &dyn Backend, m: &ConsoleSession, f: StartForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    let title = f.title.trim();
    let req = openma_types::sessions::CreateSessionRequest {
        agent_id: Some(f.agent_id),
        title: (!title.is_empty()).then(|| title.to_owned()),
        ..Default::default()
    };
    match b.create_session(&m.tenant, req).await {
        Ok(s) => Response::redirect(&format!("/console/sessions/{}", s.id)),
        Err(e) => domain_error(m, e),
    }
}

fn status_of(s: &openma_types::sessions::Session) -> String {
    serde_json::to_value(s.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[derive(Deserialize)]
pub struct SessionsQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
}

/// Sessions of the tenant, newest first, filtered by status and searched by title or id.
pub async fn list(b: &dyn Backend, m: &ConsoleSession, q: SessionsQuery) -> Response {
    let mut filter = SessionFilter::default();
    if !q.status.is_empty() {
        match serde_json::from_value(serde_json::Value::String(q.status.clone())) {
            Ok(s) => filter.statuses = vec![s],
            Err(_) => return Response::html(400, page("Sessions", Some(m), html! { p.error { "Unknown status." } })),
        }
    }
    let params = ListParams { limit: Some(100), ..Default::default() };
    let Ok(list) = b.list_sessions(&m.tenant, &params, &filter).await else {
        return Response::html(500, page("Error", Some(m), html! { p.error { "The sessions could not be read." } }));
    };
    let needle = q.q.trim().to_lowercase();
    let shown: Vec<_> = list
        .data
        .iter()
        .filter(|s| needle.is_empty() || s.id.to_lowercase().contains(&needle) || s.title.as_deref().unwrap_or_default().to_lowercase().contains(&needle))
        .collect();
    Response::html(
        200,
        page(
            "Sessions",
            Some(m),
            html! {
                h1 { "Sessions" }
                form method="get" action="/console/sessions" {
                    label { "Search " input type="search" name="q" value=(q.q); }
                    label { "Status "
                        select name="status" {
                            @for st in ["", "idle", "running", "rescheduling", "terminated"] {
                                option value=(st) selected[st == q.status] { (if st.is_empty() { "any" } else { st }) }
                            }
                        }
                    }
                    button type="submit" { "Filter" }
                }
                @if shown.is_empty() {
                    p.empty { "No session matches." }
                } @else {
                    table {
                        thead { tr { th { "Session" } th { "Status" } th { "Agent" } th { "Title" } th { "Created" } } }
                        tbody {
                            @for s in &shown {
                                tr {
                                    td { a href={ "/console/sessions/" (s.id) } { code { (s.id) } } }
                                    td { (status_of(s)) }
                                    td { (s.agent.name) }
                                    td { (s.title.clone().unwrap_or_default()) }
                                    td { (s.created_at.to_string()) }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

/// One session: its timeline (tool calls paired with their results, thinking, messages,
/// errors, usage) kept live over the event stream, and the forms to talk to it.
pub async fn one(b: &dyn Backend, m: &ConsoleSession, id: &str) -> Response {
    let session = match b.get_session(&m.tenant, id).await {
        Ok(s) => s,
        Err(e) if e.status == 404 => {
            return Response::html(404, page("Not found", Some(m), html! { p.error { "No such session in this tenant." } }));
        }
        Err(_) => return Response::html(500, page("Error", Some(m), html! { p.error { "The session could not be read." } })),
    };
    // what the page shows before the stream takes over (the stream repeats nothing it has)
    let events = b.list_events(&m.tenant, id, 1000).await.unwrap_or_default();
    // `</` cannot end the script element the JSON sits in
    let initial = serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()).replace("</", "<\\/");
    Response::html(
        200,
        page(
            session.title.as_deref().unwrap_or("Session"),
            Some(m),
            html! {
                h1 { (session.title.clone().unwrap_or_else(|| session.id.clone())) }
                p { code { (session.id) } " · " (session.agent.name) " · " span #status { (status_of(&session)) } }
                ol #timeline aria-live="polite" {}
                form #send {
                    label { "Message " textarea name="text" rows="3" required {} }
                    button type="submit" { "Send" }
                    " "
                    button type="button" #interrupt { "Interrupt" }
                    " "
                    button type="button" #archive { "Archive" }
                }
                p #problem .error role="alert" {}
                script type="application/json" #initial { (maud::PreEscaped(initial)) }
                script { (maud::PreEscaped(format!("const SESSION={};const CSRF={};{}", serde_json::json!(session.id), serde_json::json!(m.csrf_token), TIMELINE_JS))) }
            },
        ),
    )
}

/// The session page's script: renders events (from the page, then from the stream), pairs
/// tool results with their calls, and sends messages, confirmations and interrupts through
/// the API with the page's CSRF token.
const TIMELINE_JS: &str = r#"
const list=document.getElementById('timeline');const seen=new Set();
const text=c=>(c||[]).filter(b=>b.type==='text').map(b=>b.text).join('');
function post(events){return fetch('/v1/sessions/'+SESSION+'/events',{method:'POST',headers:{'content-type':'application/json','x-csrf-token':CSRF},body:JSON.stringify({events})}).then(r=>{if(!r.ok)return r.json().then(j=>{document.getElementById('problem').textContent=j.error?j.error.message:'request failed'})})}
function item(cls,label,body){const li=document.createElement('li');li.className=cls;const b=document.createElement('b');b.textContent=label+' ';li.append(b);const span=document.createElement('span');span.textContent=body;li.append(span);list.append(li);return li}
function render(e){if(!e.id||seen.has(e.id))return;seen.add(e.id);switch(e.type){
case 'user.message':item('user','You:',text(e.content));break;
case 'agent.message':item('agent','Agent:',text(e.content));break;
case 'agent.thinking':item('thinking','Thinking:',e.thinking||'');break;
case 'agent.tool_use':case 'agent.mcp_tool_use':case 'agent.custom_tool_use':{const li=item('tool','→ '+e.name,JSON.stringify(e.input));li.id='call-'+e.id;
 if(e.evaluated_permission==='ask'||e.type==='agent.custom_tool_use'){const p=document.createElement('p');p.className='ask';
  if(e.type==='agent.custom_tool_use'){const i=document.createElement('input');i.setAttribute('aria-label','result of '+e.name);const s=document.createElement('button');s.textContent='Send result';s.onclick=()=>post([{type:'user.custom_tool_result',custom_tool_use_id:e.id,content:[{type:'text',text:i.value}]}]);p.append(i,s)}
  else{for(const [label,result] of [['Allow','allow'],['Deny','deny']]){const b=document.createElement('button');b.textContent=label;b.onclick=()=>post([{type:'user.tool_confirmation',tool_use_id:e.id,result}]);p.append(b,' ')}}
  li.append(p)}break}
case 'agent.tool_result':case 'agent.mcp_tool_result':case 'user.custom_tool_result':case 'user.tool_confirmation':{const call=document.getElementById('call-'+(e.tool_use_id||e.mcp_tool_use_id||e.custom_tool_use_id));const target=call||item('tool','result','');
 const ask=target.querySelector('.ask');if(ask)ask.remove();if(e.type!=='user.tool_confirmation'){const pre=document.createElement('pre');pre.textContent=(e.is_error?'error: ':'')+text(e.content);target.append(pre)}else if(e.result==='deny'){const d=document.createElement('p');d.textContent='denied';target.append(d)}break}
case 'session.error':item('error','Error:',(e.error&&e.error.message)||'');break;
case 'session.usage':{const u=e.usage||{};item('usage','Usage:',(u.input_tokens||0)+' in / '+(u.output_tokens||0)+' out'+(u.list_cost?' · '+u.list_cost.amount+' '+u.list_cost.currency:''));break}
case 'session.status_idle':document.getElementById('status').textContent='idle';break;
case 'session.status_running':document.getElementById('status').textContent='running';break;
case 'session.status_terminated':document.getElementById('status').textContent='terminated';break;}}
JSON.parse(document.getElementById('initial').textContent).forEach(render);
const stream=new EventSource('/v1/sessions/'+SESSION+'/events/stream');const onEvent=m=>{try{render(JSON.parse(m.data))}catch(_){}};stream.onmessage=onEvent;
for(const t of ['user.message','agent.message','agent.thinking','agent.tool_use','agent.mcp_tool_use','agent.custom_tool_use','agent.tool_result','agent.mcp_tool_result','user.custom_tool_result','user.tool_confirmation','user.interrupt','session.error','session.usage','session.status_idle','session.status_running','session.status_terminated'])stream.addEventListener(t,onEvent);
document.getElementById('send').onsubmit=ev=>{ev.preventDefault();const t=ev.target.text;const v=t.value.trim();if(!v)return;post([{type:'user.message',content:[{type:'text',text:v}]}]).then(()=>{t.value=''})};
document.getElementById('interrupt').onclick=()=>post([{type:'user.interrupt'}]);
document.getElementById('archive').onclick=()=>fetch('/v1/sessions/'+SESSION+'/archive',{method:'POST',headers:{'x-csrf-token':CSRF}}).then(r=>r.json()).then(j=>{if(j.error)document.getElementById('problem').textContent=j.error.message;else document.getElementById('status').textContent='archived'});
"#;
