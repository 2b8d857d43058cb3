//! Usage: the last 30 days' list cost per day and per agent and model.

use maud::html;
use openma_core::accounts::ConsoleSession;

use crate::layout::*;
use crate::{Backend, Response};

/// The last 30 days of the tenant's usage: list cost per day as a bar chart, and a table
/// per agent and model.
pub async fn show(b: &dyn Backend, m: &ConsoleSession) -> Response {
    use openma_core::ports::{UsageGroup, UsageQuery};
    let now = b.now().as_micros();
    let from = now - 30 * 86_400_000_000;
    let query = |group_by: Vec<UsageGroup>| UsageQuery { group_by, from: Some(from), to: None };
    let by_day = b.usage_report(&m.tenant, &query(vec![UsageGroup::Day])).await;
    let by_agent = b.usage_report(&m.tenant, &query(vec![UsageGroup::Agent, UsageGroup::Model, UsageGroup::Kind])).await;
    let (Ok(by_day), Ok(by_agent)) = (by_day, by_agent) else {
        return failed(m, 500, "The usage could not be read.");
    };
    let today = now / 86_400_000_000;
    let days: Vec<(i64, i64)> = (today - 29..=today).map(|d| (d, by_day.iter().filter(|r| r.day == Some(d)).map(|r| r.amount_micros).sum())).collect();
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let total: i64 = days.iter().map(|d| d.1).sum();
    let (w, h) = (600i64, 120i64);
    let bar = w / 30;
    let date = |d: i64| openma_types::Timestamp::from_micros(d * 86_400_000_000).to_string().chars().take(10).collect::<String>();
    Response::html(
        200,
        page(
            "Usage",
            Some(m),
            html! {
                h1 { "Usage" }
                p { "Last 30 days at list prices: " strong #usage-total { (dollars(total)) } }
                svg width=(w) height=(h + 20) viewBox={ "0 0 " (w) " " (h + 20) } role="img" aria-label="list cost per day" style="max-width:100%" {
                    @for (i, (d, amount)) in days.iter().enumerate() {
                        @let bh = amount * h / max;
                        rect x=(i as i64 * bar + 1) y=(h - bh) width=(bar - 2) height=(bh.max(1)) fill="#0a66c2" {
                            title { (date(*d)) ": " (dollars(*amount)) }
                        }
                    }
                    text x="0" y=(h + 15) font-size="11" { (date(today - 29)) }
                    text x=(w) y=(h + 15) font-size="11" text-anchor="end" { (date(today)) }
                }
                h2 { "By agent and model" }
                @if by_agent.is_empty() { p.empty { "No usage in the last 30 days." } }
                @else {
                    table {
                        thead { tr { th { "Agent" } th { "Model" } th { "Kind" } th { "Quantity" } th { "List cost" } } }
                        tbody { @for r in &by_agent {
                            tr {
                                td { code { (r.agent_id.clone().unwrap_or_default()) } }
                                td { (r.model.clone().unwrap_or_default()) }
                                td { (r.kind.clone().unwrap_or_default()) }
                                td { (r.quantity) }
                                td { (dollars(r.amount_micros)) }
                            }
                        } }
                    }
                }
            },
        ),
    )
}

