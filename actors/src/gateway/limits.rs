//! Rate limits and budgets: what a user or token may draw per minute and
//! per budget period. Defaults come from the config file; per-subject
//! overrides are run-time settings the `ProviderActor` keeps and publishes
//! with the catalog. The counters themselves live in the store, which
//! reserves atomically across instances.

use serde::{Deserialize, Serialize};

/// The longest budget period: ten years (365-day), so that a window's end
/// is always a time the API can show.
pub const MAX_BUDGET_PERIOD: u64 = 3650 * 86_400;

/// A subject's limits; 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens (prompt + completion) per minute.
    pub tpm: u64,
    /// Spend per budget period, in the price table's currency.
    pub budget: f64,
    /// The budget period in seconds (windows aligned to the Unix epoch).
    pub budget_period: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rpm: 0,
            tpm: 0,
            budget: 0.0,
            budget_period: 30 * 86_400,
        }
    }
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.rpm == 0 && self.tpm == 0 && self.budget <= 0.0
    }
}

/// A subject's own limits over the defaults (`None`: the default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub budget: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub budget_period: Option<u64>,
}

impl LimitOverride {
    pub fn over(&self, d: Limits) -> Limits {
        Limits {
            rpm: self.rpm.unwrap_or(d.rpm),
            tpm: self.tpm.unwrap_or(d.tpm),
            budget: self.budget.unwrap_or(d.budget),
            budget_period: self.budget_period.unwrap_or(d.budget_period).max(1),
        }
    }
}

/// The run-time setting name of a subject's override (`user:ID`, `token:ID`).
pub fn setting_name(subject: &str) -> String {
    format!("limits/{subject}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_only_what_it_sets() {
        let d = Limits {
            rpm: 10,
            tpm: 1000,
            budget: 5.0,
            budget_period: 86_400,
        };
        let o = LimitOverride {
            tpm: Some(0),
            budget: Some(1.5),
            ..Default::default()
        };
        assert_eq!(
            o.over(d),
            Limits {
                rpm: 10,
                tpm: 0,
                budget: 1.5,
                budget_period: 86_400
            }
        );
        assert!(Limits::default().is_unlimited());
        assert!(!d.is_unlimited());
    }
}
