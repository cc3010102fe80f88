//! The health of a component: [`HealthStatus`], shared by the resource
//! manager's check and the engine's report.

// The enum itself (snake_case text, `ALL`, `as_str`, `Display`, `FromStr`,
// ordered from best to worst) is one of the text enums of `enums.rs`.
pub use crate::enums::HealthStatus;

impl HealthStatus {
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
