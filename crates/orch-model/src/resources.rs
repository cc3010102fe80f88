//! Resource requests in the seed's shape: `{"cpu": {"cores": 2}, "memory": {"gb": 4}}`.

use crate::enums::ResourceType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest amount one request may ask for of one key. Larger values are
/// certainly mistakes and would lose precision in arithmetic.
pub const MAX_RESOURCE_AMOUNT: f64 = 1e12;

/// What a step or session needs: per resource type, amounts per unit key
/// (`cores`, `gb`, `count`, `requests_per_minute`, ...). Empty means nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceRequest(pub BTreeMap<ResourceType, BTreeMap<String, f64>>);

impl ResourceRequest {
    /// Whether nothing is requested.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|m| m.values().all(|v| *v == 0.0))
    }

    /// Adds `amount` of `key` of `kind` (replacing an earlier amount), builder style.
    #[must_use]
    pub fn with(mut self, kind: ResourceType, key: &str, amount: f64) -> Self {
        self.0
            .entry(kind)
            .or_default()
            .insert(key.to_owned(), amount);
        self
    }

    /// The amount of `key` of `kind`, 0 when absent.
    pub fn amount(&self, kind: ResourceType, key: &str) -> f64 {
        self.0
            .get(&kind)
            .and_then(|m| m.get(key))
            .copied()
            .unwrap_or(0.0)
    }

    /// Checks every amount: finite, not negative, at most [`MAX_RESOURCE_AMOUNT`].
    ///
    /// # Errors
    /// One `(path, message)` per bad amount, the path relative to the request
    /// (`cpu.cores`).
    pub fn check(&self) -> Result<(), Vec<(String, String)>> {
        let mut errs = Vec::new();
        for (kind, units) in &self.0 {
            for (key, v) in units {
                if let Err(m) = check_amount(*v) {
                    errs.push((format!("{kind}.{key}"), m));
                }
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// Checks one requested amount.
///
/// # Errors
/// A message when the amount is NaN, infinite, negative or above [`MAX_RESOURCE_AMOUNT`].
pub fn check_amount(v: f64) -> Result<(), String> {
    if v.is_nan() {
        Err("NaN is not a resource amount; use a number such as 1 or 0.5".into())
    } else if v.is_infinite() {
        Err(format!(
            "the number is out of range; a resource amount is at most {MAX_RESOURCE_AMOUNT}"
        ))
    } else if v > MAX_RESOURCE_AMOUNT {
        Err(format!(
            "{v:e} is too large a resource amount (at most {MAX_RESOURCE_AMOUNT})"
        ))
    } else if v < 0.0 {
        Err(format!("a resource amount cannot be negative ({v})"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_shape_round_trips_and_checks() {
        let r: ResourceRequest = serde_json::from_str(
            r#"{"cpu": {"cores": 2}, "memory": {"gb": 4}, "gpu": {"count": 1}}"#,
        )
        .expect("seed shape");
        assert_eq!(r.amount(ResourceType::Cpu, "cores"), 2.0);
        assert_eq!(r.amount(ResourceType::Disk, "gb"), 0.0);
        assert!(r.check().is_ok());
        let bad = ResourceRequest::default()
            .with(ResourceType::Cpu, "cores", -1.0)
            .with(ResourceType::Memory, "gb", f64::NAN)
            .with(ResourceType::Disk, "gb", 1e300);
        let errs = bad.check().expect_err("three bad amounts");
        assert_eq!(errs.len(), 3);
        assert!(serde_json::from_str::<ResourceRequest>(r#"{"cpuz": {"cores": 1}}"#).is_err());
    }
}
