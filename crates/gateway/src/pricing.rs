//! Prices for spend limits: a small lookup behind the [`Prices`] trait. The model catalog
//! (issue 4) is meant to replace [`StaticPrices`] once it lands; until then the built-in table
//! covers a few public list prices and operators/tests can supply their own.
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
        let micros = |usd: f64| {
            if usd.is_finite() && usd > 0.0 {
                (usd * 1_000_000.0).round() as u64
            } else {
                0
            }
        };
        self.by_model.insert(
            model.to_string(),
            Price {
                input_micros_per_mtok: micros(input_usd_per_mtok),
                output_micros_per_mtok: micros(output_usd_per_mtok),
            },
        );
        self
    }

    /// A few public list prices (USD per 1M tokens, input/output) as of 2025.
    pub fn builtin() -> Self {
        Self::new()
            .with("gpt-4o", 2.5, 10.0)
            .with("gpt-4o-mini", 0.15, 0.6)
            .with("gpt-4.1", 2.0, 8.0)
            .with("gpt-4.1-mini", 0.4, 1.6)
            .with("o4-mini", 1.1, 4.4)
            .with("claude-sonnet-4-5", 3.0, 15.0)
            .with("claude-haiku-4-5", 1.0, 5.0)
            .with("claude-opus-4-1", 15.0, 75.0)
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
        let p = StaticPrices::builtin()
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
}
