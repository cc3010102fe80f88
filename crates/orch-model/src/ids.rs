//! Identifiers: UUID v7 newtypes, so ids sort by creation time and never mix up.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new id (UUID v7: time-ordered, random in its low bits).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = crate::error::OrchestrationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|e| {
                    crate::error::OrchestrationError::invalid_parameters(format!(
                        "`{s}` is not a valid {}: {e}; expected a UUID such as 0190b6d0-7c5e-7a6b-8c9d-0e1f2a3b4c5d",
                        stringify!($name)
                    ))
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(
    /// Identifies one task (one step of one run, or a task created on a `TaskOrchestrator`).
    TaskId
);
uuid_id!(
    /// Identifies one run of a workflow.
    RunId
);
uuid_id!(
    /// Identifies an orchestration session.
    SessionId
);
uuid_id!(
    /// Identifies a project.
    ProjectId
);
uuid_id!(
    /// Identifies one resource allocation.
    AllocationId
);
uuid_id!(
    /// Identifies one recorded event.
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_ordered_and_round_trip() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert_ne!(a, b);
        assert!(a < b, "v7 ids created later sort later");
        assert_eq!(a.0.get_version_num(), 7);
        let parsed: TaskId = a.to_string().parse().expect("round trip");
        assert_eq!(parsed, a);
        let json = serde_json::to_string(&a).expect("serialize");
        assert_eq!(json, format!("\"{a}\""));
        assert!("nope".parse::<RunId>().is_err());
    }
}
