//! Durations in definitions: a number of seconds, or text such as `"500ms"`, `"5m"`, `"1h30m"`.

use std::time::Duration;

/// Parses a duration written as units: `d`, `h`, `m`, `s`, `ms`, each with a
/// non-negative integer or decimal amount, in decreasing order, e.g. `"1h30m"`,
/// `"90s"`, `"1.5s"`, `"250ms"`. A bare number means seconds.
///
/// # Errors
/// Returns a message saying what is wrong and what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let help =
        "write seconds as a number, or units like \"500ms\", \"30s\", \"5m\", \"1h30m\", \"2d\"";
    if s.is_empty() {
        return Err(format!("empty duration; {help}"));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(format!("{}; {help}", not_finite(s)));
        }
        return seconds(secs).map_err(|e| format!("{e}; {help}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{rest}`; {help}"
            ));
        }
        let amount: f64 = rest[..num_len].parse().map_err(|_| {
            format!(
                "`{text}` is not a duration: `{}` is not a number; {help}",
                &rest[..num_len]
            )
        })?;
        if !amount.is_finite() {
            return Err(format!("{}; {help}", not_finite(&rest[..num_len])));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (rank, unit_secs) = match unit {
            "d" => (0, 86_400.0),
            "h" => (1, 3_600.0),
            "m" => (2, 60.0),
            "s" => (3, 1.0),
            "ms" => (4, 0.001),
            "" => {
                return Err(format!(
                    "`{text}` is not a duration: the amount {amount} has no unit; {help}"
                ));
            }
            other => {
                return Err(format!(
                    "`{text}` is not a duration: unknown unit `{other}`; {help}"
                ));
            }
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(format!(
                "`{text}` is not a duration: units must go from largest to smallest, each once; {help}"
            ));
        }
        last_rank = rank;
        let part = seconds(amount * unit_secs).map_err(|e| format!("`{text}`: {e}"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
    }
    Ok(total)
}

/// Why the text of a number that parsed as infinite or NaN is no duration,
/// by what it was written as: `1e400` is out of range, `inf` is no number.
fn not_finite(text: &str) -> String {
    let shown: String = text.chars().take(40).collect();
    let more = if text.chars().count() > 40 { "…" } else { "" };
    let t = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if t.starts_with("inf") || t.starts_with("nan") {
        format!("`{shown}{more}` is not a finite number of seconds")
    } else {
        format!("the number `{shown}{more}` is out of range for a duration")
    }
}

/// Parses a timeout: a duration as [`parse_duration`] reads it, which must be
/// positive (a timeout of 0 would fail every attempt at once).
///
/// # Errors
/// As [`parse_duration`], and for a zero duration.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    check_timeout(d)?;
    Ok(d)
}

/// Checks that a timeout is positive.
///
/// # Errors
/// For a zero duration (`0`, `-0`, `"0s"`, or less than a nanosecond), with a
/// message that says what to write instead.
pub fn check_timeout(d: Duration) -> Result<(), String> {
    if d.is_zero() {
        Err(
            "a timeout must be positive: 0 would fail every attempt at once; \
             leave the timeout out (or write null in a definition) for no limit"
                .to_owned(),
        )
    } else {
        Ok(())
    }
}

/// A duration from a number of seconds.
///
/// # Errors
/// When the number is negative, not finite, or too large.
pub fn seconds(secs: f64) -> Result<Duration, String> {
    if secs.is_nan() {
        return Err("a duration must be a number of seconds, not NaN".to_owned());
    }
    if secs.is_infinite() {
        return Err("the number is out of range for a duration".to_owned());
    }
    if secs < 0.0 {
        return Err(format!("a duration cannot be negative ({secs} s)"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{secs:e} s is too long a duration"))
}

/// Formats a duration compactly for humans and for round-tripping through
/// [`parse_duration`]: `"1h30m"`, `"250ms"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return if d.is_zero() {
            "0s".into()
        } else {
            format!("{}s", d.as_secs_f64())
        };
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}s", d.as_secs_f64());
    }
    let mut out = String::new();
    let mut ms = total_ms;
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        let n = ms / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ms -= n * size;
        }
    }
    out
}

/// Serde helpers: a duration serializes as a number of seconds (an integer when
/// whole, as the seed's saved workflows hold it) and deserializes from seconds
/// or from text accepted by [`parse_duration`].
pub mod serde_secs {
    use super::{parse_duration, seconds};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Int(u64),
        Float(f64),
        Text(String),
    }

    fn from_repr<E: serde::de::Error>(r: Repr) -> Result<Duration, E> {
        match r {
            Repr::Int(n) => Ok(Duration::from_secs(n)),
            Repr::Float(f) => seconds(f).map_err(E::custom),
            Repr::Text(t) => parse_duration(&t).map_err(E::custom),
        }
    }

    /// Serializes as seconds.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    /// Deserializes from seconds or text.
    ///
    /// # Errors
    /// When the value is not a valid duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_repr(Repr::deserialize(d)?)
    }

    /// The same for `Option<Duration>` (`null` is `None`).
    pub mod option {
        use super::Repr;
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;

        /// Serializes `Some` as seconds and `None` as null.
        ///
        /// # Errors
        /// Only the serializer's own.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        /// Deserializes from null, seconds or text.
        ///
        /// # Errors
        /// When the value is not a valid duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<Repr>::deserialize(d)?
                .map(super::from_repr)
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in [
            "",
            "5x",
            "m",
            "-1",
            "1m1h",
            "1m1m",
            "5 minutes",
            "NaN",
            "inf",
            "1e400",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.contains("duration") || err.contains("seconds"),
                "{bad}: {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
