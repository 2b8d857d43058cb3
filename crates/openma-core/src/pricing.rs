//! Prices: what usage costs, in integer micro-dollars (no float rounding ever touches
//! money). Budgets are enforced on these exact values; responses round to cents.
//!
//! The built-in list (public list prices by model-id prefix, and the platform rates) is
//! the default. A deployment overrides it per model and per rate in its config file, and a
//! tenant's model card may carry prices of its own; each override applies from its
//! `effective_from` on. A ledger row is priced once, with the price in effect at the moment
//! of its usage, and never again: a price change cannot rewrite or reprice past rows.

use std::collections::BTreeMap;

use openma_types::Timestamp;
use openma_types::model_cards::ModelPriceOverride;
use openma_types::sessions::SessionUsage;

/// Per-million-token prices of one model, in micro-dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_mtok: u64,
    pub output_per_mtok: u64,
    /// Reading the prompt cache (list: 0.1× input).
    pub cache_read_per_mtok: u64,
    /// Writing the prompt cache, 5-minute entries (list: 1.25× input).
    pub cache_write_per_mtok: u64,
}

impl ModelPrice {
    /// A price whose cache rates follow the public list ratios of its input rate.
    pub const fn list(input_per_mtok: u64, output_per_mtok: u64) -> Self {
        ModelPrice { input_per_mtok, output_per_mtok, cache_read_per_mtok: input_per_mtok / 10, cache_write_per_mtok: input_per_mtok * 5 / 4 }
    }

    /// The price a model card's override states (absent cache rates follow the list ratios).
    pub fn of_override(o: &ModelPriceOverride) -> Self {
        let list = ModelPrice::list(o.input_per_mtok_micros, o.output_per_mtok_micros);
        ModelPrice {
            cache_read_per_mtok: o.cache_read_per_mtok_micros.unwrap_or(list.cache_read_per_mtok),
            cache_write_per_mtok: o.cache_write_per_mtok_micros.unwrap_or(list.cache_write_per_mtok),
            ..list
        }
    }

    const FREE: ModelPrice = ModelPrice { input_per_mtok: 0, output_per_mtok: 0, cache_read_per_mtok: 0, cache_write_per_mtok: 0 };
}

const fn usd(dollars: u64, cents: u64) -> u64 {
    dollars * 1_000_000 + cents * 10_000
}

/// The platform's own rates (everything but model tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rate {
    /// Session running time, per hour, metered to the millisecond while running.
    RuntimePerHour,
    /// Sandbox CPU time, per CPU-hour, metered to the millisecond. Sandbox wall time is
    /// recorded at no charge (running time already pays for the session's wall clock).
    SandboxCpuPerHour,
    /// One `web_search` the platform performs.
    WebSearchPerSearch,
    /// File storage, per GB (10⁹ bytes) stored for a month of 730 hours.
    FileStoragePerGbMonth,
}

impl Rate {
    /// The built-in rate, in micro-dollars.
    pub const fn default_micros(self) -> u64 {
        match self {
            Rate::RuntimePerHour => usd(0, 8),
            Rate::SandboxCpuPerHour => usd(0, 5),
            // $10 per 1,000 searches
            Rate::WebSearchPerSearch => usd(0, 1),
            // $0.023 per GB-month
            Rate::FileStoragePerGbMonth => 23_000,
        }
    }
}

/// Session running time: $0.08 per hour (the built-in rate).
pub const RUNTIME_MICROS_PER_HOUR: u64 = Rate::RuntimePerHour.default_micros();

/// Sandbox CPU time: $0.05 per CPU-hour (the built-in rate).
pub const SANDBOX_CPU_MICROS_PER_HOUR: u64 = Rate::SandboxCpuPerHour.default_micros();

/// Hours in the month of [`Rate::FileStoragePerGbMonth`] (365 × 24 / 12).
pub const HOURS_PER_MONTH: u64 = 730;

/// Known public list prices by model-id prefix, longest prefix first.
const PRICES: &[(&str, ModelPrice)] = &[
    ("claude-opus-4-1", ModelPrice::list(usd(15, 0), usd(75, 0))),
    ("claude-opus-4-0", ModelPrice::list(usd(15, 0), usd(75, 0))),
    ("claude-opus-4-2", ModelPrice::list(usd(15, 0), usd(75, 0))),
    ("claude-opus-4-", ModelPrice::list(usd(5, 0), usd(25, 0))),
    ("claude-opus-4", ModelPrice::list(usd(15, 0), usd(75, 0))),
    ("claude-opus-5", ModelPrice::list(usd(5, 0), usd(25, 0))),
    ("claude-sonnet-", ModelPrice::list(usd(3, 0), usd(15, 0))),
    ("claude-3-7-sonnet", ModelPrice::list(usd(3, 0), usd(15, 0))),
    ("claude-3-5-sonnet", ModelPrice::list(usd(3, 0), usd(15, 0))),
    ("claude-haiku-", ModelPrice::list(usd(1, 0), usd(5, 0))),
    ("claude-3-5-haiku", ModelPrice::list(usd(0, 80), usd(4, 0))),
    ("claude-3-haiku", ModelPrice::list(usd(0, 25), usd(1, 25))),
];

/// The list price of a model, if it has one.
pub fn model_price(model: &str) -> Option<ModelPrice> {
    PRICES.iter().find(|(prefix, _)| model.starts_with(prefix)).map(|(_, p)| *p)
}

/// Prices that change over time: each entry applies from its moment until the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dated<T> {
    from: Timestamp,
    price: T,
}

/// The latest of `entries` in effect at `at`.
fn in_effect<T: Copy>(entries: &[Dated<T>], at: Timestamp) -> Option<T> {
    entries.iter().filter(|e| e.from <= at).max_by_key(|e| e.from).map(|e| e.price)
}

/// The prices of one deployment: the built-in list with the operator's dated overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriceSchedule {
    models: BTreeMap<String, Vec<Dated<ModelPrice>>>,
    rates: BTreeMap<Rate, Vec<Dated<u64>>>,
}

impl PriceSchedule {
    /// From `from` on, `model` (an exact model id) costs `price`.
    pub fn override_model(&mut self, model: &str, from: Timestamp, price: ModelPrice) {
        self.models.entry(model.to_owned()).or_default().push(Dated { from, price });
    }

    /// From `from` on, `rate` is `micros`.
    pub fn override_rate(&mut self, rate: Rate, from: Timestamp, micros: u64) {
        self.rates.entry(rate).or_default().push(Dated { from, price: micros });
    }

    /// The price of `model` at `at`: the serving model card's override in effect then,
    /// else the deployment's, else the built-in list price. `card` holds the card's
    /// overrides (those naming another model are ignored).
    pub fn model_price(&self, model: &str, at: Timestamp, card: &[ModelPriceOverride]) -> Option<ModelPrice> {
        // the latest in effect; from the same moment, a price naming the model beats one for
        // all of the card's models
        let best = card
            .iter()
            .filter(|o| o.model.as_deref().is_none_or(|m| m == model) && o.effective_from.is_some_and(|f| f <= at))
            .max_by_key(|o| (o.effective_from, o.model.is_some()));
        if let Some(o) = best {
            return Some(ModelPrice::of_override(o));
        }
        self.models.get(model).and_then(|d| in_effect(d, at)).or_else(|| model_price(model))
    }

    /// [`Self::model_price`], free when the model has no price at all (its token counts are
    /// still recorded).
    pub fn model_price_or_free(&self, model: &str, at: Timestamp, card: &[ModelPriceOverride]) -> ModelPrice {
        self.model_price(model, at, card).unwrap_or(ModelPrice::FREE)
    }

    /// `rate` at `at`, in micro-dollars.
    pub fn rate(&self, rate: Rate, at: Timestamp) -> u64 {
        self.rates.get(&rate).and_then(|d| in_effect(d, at)).unwrap_or(rate.default_micros())
    }
}

/// The cost of `tokens` at `per_mtok` micro-dollars per million, rounded down.
pub fn per_tokens(tokens: u64, per_mtok: u64) -> u64 {
    ((u128::from(tokens) * u128::from(per_mtok)) / 1_000_000) as u64
}

/// The list cost of a session's usage with `model`, in micro-dollars: tokens (cache
/// writes at 1.25× input, 1-hour writes at 2×, reads at 0.1×) plus running time.
pub fn list_cost_micros(model: &str, u: &SessionUsage) -> Option<u64> {
    let p = model_price(model)?;
    let tokens = per_tokens(u.input_tokens, p.input_per_mtok)
        + per_tokens(u.output_tokens, p.output_per_mtok)
        + per_tokens(u.cache_creation.ephemeral_5m_input_tokens, p.cache_write_per_mtok)
        + per_tokens(u.cache_creation.ephemeral_1h_input_tokens, p.input_per_mtok * 2)
        + per_tokens(u.cache_read_input_tokens, p.cache_read_per_mtok);
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

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    fn card(model: Option<&str>, from: i64, input: u64) -> ModelPriceOverride {
        ModelPriceOverride {
            model: model.map(str::to_owned),
            input_per_mtok_micros: input,
            output_per_mtok_micros: input * 2,
            cache_read_per_mtok_micros: None,
            cache_write_per_mtok_micros: None,
            effective_from: Some(at(from)),
        }
    }

    #[test]
    fn a_deployment_override_applies_from_its_moment_and_not_before() {
        let mut s = PriceSchedule::default();
        s.override_model("claude-sonnet-4-6", at(100), ModelPrice::list(2_000_000, 10_000_000));
        s.override_model("claude-sonnet-4-6", at(200), ModelPrice::list(4_000_000, 20_000_000));
        // before the first override: the built-in list price
        assert_eq!(s.model_price("claude-sonnet-4-6", at(99), &[]).unwrap().input_per_mtok, 3_000_000);
        assert_eq!(s.model_price("claude-sonnet-4-6", at(100), &[]).unwrap().input_per_mtok, 2_000_000);
        assert_eq!(s.model_price("claude-sonnet-4-6", at(199), &[]).unwrap().input_per_mtok, 2_000_000);
        assert_eq!(s.model_price("claude-sonnet-4-6", at(500), &[]).unwrap().input_per_mtok, 4_000_000);
        // an override names an exact model id: other ids of the same family keep the list
        assert_eq!(s.model_price("claude-sonnet-4-5", at(500), &[]).unwrap().input_per_mtok, 3_000_000);
        // cache rates follow the list ratios of the overridden input rate
        let p = s.model_price("claude-sonnet-4-6", at(150), &[]).unwrap();
        assert_eq!((p.cache_read_per_mtok, p.cache_write_per_mtok), (200_000, 2_500_000));
    }

    #[test]
    fn a_model_card_price_beats_the_deployment_once_in_effect() {
        let mut s = PriceSchedule::default();
        s.override_model("m", at(0), ModelPrice::list(1_000_000, 1_000_000));
        let prices = [card(None, 100, 7_000_000), card(Some("m"), 100, 9_000_000), card(Some("other"), 50, 1)];
        assert_eq!(s.model_price("m", at(99), &prices).unwrap().input_per_mtok, 1_000_000);
        // from the same moment, the price naming the model wins over the card-wide one
        assert_eq!(s.model_price("m", at(100), &prices).unwrap().input_per_mtok, 9_000_000);
        assert_eq!(s.model_price("n", at(100), &prices).unwrap().input_per_mtok, 7_000_000);
        assert!(s.model_price("n", at(99), &prices).is_none(), "no list price, no override yet");
        assert_eq!(s.model_price_or_free("n", at(99), &prices), ModelPrice::FREE);
        let explicit = ModelPriceOverride { cache_read_per_mtok_micros: Some(5), ..card(Some("m"), 300, 1_000) };
        assert_eq!(s.model_price("m", at(300), &[explicit]).unwrap().cache_read_per_mtok, 5);
    }

    #[test]
    fn rates_default_to_the_built_in_list_and_change_only_forward() {
        let mut s = PriceSchedule::default();
        assert_eq!(s.rate(Rate::WebSearchPerSearch, at(0)), 10_000, "$10 per 1,000 searches");
        assert_eq!(s.rate(Rate::RuntimePerHour, at(0)), RUNTIME_MICROS_PER_HOUR);
        s.override_rate(Rate::RuntimePerHour, at(1_000), 160_000);
        assert_eq!(s.rate(Rate::RuntimePerHour, at(999)), 80_000);
        assert_eq!(s.rate(Rate::RuntimePerHour, at(1_000)), 160_000);
        assert_eq!(s.rate(Rate::SandboxCpuPerHour, at(1_000)), SANDBOX_CPU_MICROS_PER_HOUR);
    }
}
