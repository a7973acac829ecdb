//! Prices for spend limits behind the [`Prices`] trait. In a running gateway the model catalog
//! (`gatehouse_providers::catalog`, the same list that prices the call log) answers;
//! [`StaticPrices`] is a fixed table for tests and embedders. Spend limits charge uncached
//! input and output prices (a conservative reservation: cached input is never dearer).
//!
//! A model without a price is charged 0 USD (spend limits cannot hold for it; logged at debug
//! level per call, to keep the hot path quiet).

use std::collections::HashMap;

/// Price of one model in micro-USD per million tokens (`2_500_000` = 2.50 USD per 1M tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input_micros_per_mtok: u64,
    pub output_micros_per_mtok: u64,
}

impl Price {
    /// From USD per million tokens; negative, NaN or infinite prices count as 0.
    pub fn from_usd(input_usd_per_mtok: f64, output_usd_per_mtok: f64) -> Self {
        let micros = |usd: f64| if usd.is_finite() && usd > 0.0 { (usd * 1_000_000.0).round() as u64 } else { 0 };
        Self { input_micros_per_mtok: micros(input_usd_per_mtok), output_micros_per_mtok: micros(output_usd_per_mtok) }
    }

    /// Cost in micro-USD of `input` + `output` tokens, rounded up.
    pub fn cost_micros(&self, input: u64, output: u64) -> u64 {
        let total = u128::from(input) * u128::from(self.input_micros_per_mtok)
            + u128::from(output) * u128::from(self.output_micros_per_mtok);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// A price lookup.
pub trait Prices: Send + Sync + 'static {
    /// The price of `upstream_model` at provider `provider` (name as configured), if known.
    fn price(&self, provider: &str, upstream_model: &str) -> Option<Price>;
}

/// A fixed table keyed by upstream model name (provider ignored).
#[derive(Debug, Clone, Default)]
pub struct StaticPrices {
    by_model: HashMap<String, Price>,
}

impl StaticPrices {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the price of `model` in USD per million tokens.
    pub fn with(mut self, model: &str, input_usd_per_mtok: f64, output_usd_per_mtok: f64) -> Self {
        self.by_model.insert(model.to_string(), Price::from_usd(input_usd_per_mtok, output_usd_per_mtok));
        self
    }
}

impl Prices for gatehouse_providers::catalog::Catalog {
    /// Catalog lookup by upstream model (date suffixes and aliases normalised by the catalog).
    fn price(&self, _provider: &str, upstream_model: &str) -> Option<Price> {
        self.lookup(upstream_model).map(|e| Price::from_usd(e.input, e.output))
    }
}

impl Prices for StaticPrices {
    fn price(&self, _provider: &str, upstream_model: &str) -> Option<Price> {
        self.by_model.get(upstream_model).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_up_in_micro_usd() {
        let p = StaticPrices::new()
            .with("gpt-4o", 2.5, 10.0)
            .price("openai", "gpt-4o")
            .unwrap_or(Price {
                input_micros_per_mtok: 0,
                output_micros_per_mtok: 0,
            });
        // 1000 input tokens at 2.50/M = 0.0025 USD = 2500 micro-USD; 100 output at 10/M = 1000.
        assert_eq!(p.cost_micros(1000, 100), 3500);
        assert_eq!(p.cost_micros(1, 0), 3);
        assert_eq!(StaticPrices::new().price("x", "gpt-4o"), None);
    }

    #[test]
    fn the_catalog_prices_spend_limits() {
        let catalog = gatehouse_providers::catalog::Catalog::builtin();
        let p = catalog.price("openai", "gpt-4o-mini").expect("gpt-4o-mini is in the catalog");
        assert!(p.input_micros_per_mtok > 0 && p.output_micros_per_mtok >= p.input_micros_per_mtok);
        assert_eq!(catalog.price("openai", "no-such-model-xyz"), None);
    }
}
