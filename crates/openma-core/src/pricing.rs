//! List prices: what a session's usage costs at public list rates, in integer
//! micro-dollars (no float rounding ever touches money). Budgets are enforced on these
//! exact values; responses round to cents.

use openma_types::sessions::SessionUsage;

/// Per-million-token list prices of one model, in micro-dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_mtok: u64,
    pub output_per_mtok: u64,
}

const fn usd(dollars: u64, cents: u64) -> u64 {
    dollars * 1_000_000 + cents * 10_000
}

/// Session running time: $0.08 per hour, metered to the millisecond while running.
pub const RUNTIME_MICROS_PER_HOUR: u64 = usd(0, 8);

/// Sandbox CPU time: $0.05 per CPU-hour, metered to the millisecond. Sandbox wall time is
/// recorded at no charge (running time already pays for the session's wall clock).
pub const SANDBOX_CPU_MICROS_PER_HOUR: u64 = usd(0, 5);

/// Known public list prices by model-id prefix, longest prefix first.
const PRICES: &[(&str, ModelPrice)] = &[
    ("claude-opus-4-1", ModelPrice { input_per_mtok: usd(15, 0), output_per_mtok: usd(75, 0) }),
    ("claude-opus-4-0", ModelPrice { input_per_mtok: usd(15, 0), output_per_mtok: usd(75, 0) }),
    ("claude-opus-4-2", ModelPrice { input_per_mtok: usd(15, 0), output_per_mtok: usd(75, 0) }),
    ("claude-opus-4-", ModelPrice { input_per_mtok: usd(5, 0), output_per_mtok: usd(25, 0) }),
    ("claude-opus-4", ModelPrice { input_per_mtok: usd(15, 0), output_per_mtok: usd(75, 0) }),
    ("claude-opus-5", ModelPrice { input_per_mtok: usd(5, 0), output_per_mtok: usd(25, 0) }),
    ("claude-sonnet-", ModelPrice { input_per_mtok: usd(3, 0), output_per_mtok: usd(15, 0) }),
    ("claude-3-7-sonnet", ModelPrice { input_per_mtok: usd(3, 0), output_per_mtok: usd(15, 0) }),
    ("claude-3-5-sonnet", ModelPrice { input_per_mtok: usd(3, 0), output_per_mtok: usd(15, 0) }),
    ("claude-haiku-", ModelPrice { input_per_mtok: usd(1, 0), output_per_mtok: usd(5, 0) }),
    ("claude-3-5-haiku", ModelPrice { input_per_mtok: usd(0, 80), output_per_mtok: usd(4, 0) }),
    ("claude-3-haiku", ModelPrice { input_per_mtok: usd(0, 25), output_per_mtok: usd(1, 25) }),
];

/// The list price of a model, if it has one.
pub fn model_price(model: &str) -> Option<ModelPrice> {
    PRICES.iter().find(|(prefix, _)| model.starts_with(prefix)).map(|(_, p)| *p)
}

fn per_tokens(tokens: u64, per_mtok: u64) -> u64 {
    ((u128::from(tokens) * u128::from(per_mtok)) / 1_000_000) as u64
}

/// The list cost of a session's usage with `model`, in micro-dollars: tokens (cache
/// writes at 1.25× input, 1-hour writes at 2×, reads at 0.1×) plus running time.
pub fn list_cost_micros(model: &str, u: &SessionUsage) -> Option<u64> {
    let p = model_price(model)?;
    let tokens = per_tokens(u.input_tokens, p.input_per_mtok)
        + per_tokens(u.output_tokens, p.output_per_mtok)
        + per_tokens(u.cache_creation.ephemeral_5m_input_tokens, p.input_per_mtok * 5 / 4)
        + per_tokens(u.cache_creation.ephemeral_1h_input_tokens, p.input_per_mtok * 2)
        + per_tokens(u.cache_read_input_tokens, p.input_per_mtok / 10);
    let runtime = (u.active_seconds * RUNTIME_MICROS_PER_HOUR as f64 / 3600.0) as u64;
    Some(tokens + runtime)
}

/// Micro-dollars as whole cents, rounded half up (reported figures).
pub fn cents(micros: u64) -> u64 {
    (micros + 5_000) / 10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_worked_example_costs_70_5_cents() {
        // one running hour of Opus 5 with 50k input and 15k output tokens = $0.705
        let u = SessionUsage { input_tokens: 50_000, output_tokens: 15_000, active_seconds: 3600.0, ..Default::default() };
        assert_eq!(list_cost_micros("claude-opus-5", &u), Some(705_000));
    }

    #[test]
    fn unknown_models_have_no_list_price() {
        assert!(model_price("llama-3.3-70b").is_none());
        assert_eq!(model_price("claude-sonnet-4-6").unwrap().input_per_mtok, 3_000_000);
        assert_eq!(cents(704_999), 70);
        assert_eq!(cents(705_000), 71);
    }
}
