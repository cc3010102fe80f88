//! The health of a component: [`HealthStatus`], shared by the resource
//! manager's check and the engine's report.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How well a component works, ordered from best to worst, so that the
/// status of several components is the greatest ([`HealthStatus::worst`]).
///
/// Serialized in snake_case (`"healthy"`, `"degraded"`, `"unhealthy"`), as
/// the seed's `health_check()` reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works.
    #[default]
    Healthy,
    /// Something needs attention, but work runs.
    Degraded,
    /// Something does not work.
    Unhealthy,
}

impl HealthStatus {
    /// Every variant, from best to worst.
    pub const ALL: &'static [HealthStatus] = &[
        HealthStatus::Healthy,
        HealthStatus::Degraded,
        HealthStatus::Unhealthy,
    ];

    /// The snake_case text of the variant, as serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// Whether this is [`HealthStatus::Healthy`].
    pub fn is_healthy(&self) -> bool {
        *self == HealthStatus::Healthy
    }

    /// The worse of two statuses.
    #[must_use]
    pub fn worst(self, other: HealthStatus) -> HealthStatus {
        self.max(other)
    }

    /// The worst of several statuses; [`HealthStatus::Healthy`] when there are none.
    pub fn worst_of(statuses: impl IntoIterator<Item = HealthStatus>) -> HealthStatus {
        statuses
            .into_iter()
            .fold(HealthStatus::Healthy, HealthStatus::worst)
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HealthStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == lower)
            .ok_or_else(|| {
                format!("`{s}` is not a valid HealthStatus; expected one of: healthy, degraded, unhealthy")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_seed_text_and_parses_back() {
        for s in HealthStatus::ALL {
            let json = serde_json::to_string(s).expect("ser");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(serde_json::from_str::<HealthStatus>(&json).expect("de"), *s);
            assert_eq!(s.as_str().parse::<HealthStatus>(), Ok(*s));
        }
        let err = "fine".parse::<HealthStatus>().expect_err("unknown");
        assert!(err.contains("expected one of: healthy, degraded"), "{err}");
    }

    #[test]
    fn the_worst_status_wins() {
        use HealthStatus::{Degraded, Healthy, Unhealthy};
        assert_eq!(Healthy.worst(Degraded), Degraded);
        assert_eq!(Unhealthy.worst(Degraded), Unhealthy);
        assert_eq!(Healthy.worst(Healthy), Healthy);
        assert_eq!(HealthStatus::worst_of([]), Healthy);
        assert_eq!(
            HealthStatus::worst_of([Healthy, Unhealthy, Degraded]),
            Unhealthy
        );
        assert!(Healthy.is_healthy() && !Degraded.is_healthy());
    }
}
