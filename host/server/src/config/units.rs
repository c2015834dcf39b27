//! Quantities written by people: byte sizes ("50 MiB") and time spans ("30s").
//!
//! Both accept a bare TOML integer (bytes, seconds) or a string of a whole number and a unit, and
//! both display in a form that parses back to the same value, so a config serialized with
//! [`toml::to_string`] reads back unchanged.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a byte size or time span was not understood. The message is written for the person who
/// typed the value; the config loader adds the file, line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuantityError(String);

/// A number of bytes.
///
/// Units (case-insensitive; every unit counts bytes, never bits):
/// - `B`, or no unit: bytes.
/// - `KiB`, `MiB`, `GiB`, `TiB` and the short forms `K`, `M`, `G`, `T`: powers of 1024. The short
///   forms are binary because that is what mail operators expect from Dovecot and nginx configs.
/// - `KB`, `MB`, `GB`, `TB`: powers of 1000, as the SI prefixes say.
///
/// Whole numbers only ("1536 KiB", not "1.5 MiB"), so a value never depends on rounding.
/// Displays in the largest binary unit that divides it exactly ("50 MiB", "1000 B").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn bytes(n: u64) -> Self {
        Self(n)
    }

    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    pub const fn gib(n: u64) -> Self {
        Self(n * 1024 * 1024 * 1024)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

const BYTE_UNITS_HELP: &str = "use B, KiB, MiB, GiB, TiB (powers of 1024; K, M, G, T mean the same) \
                               or KB, MB, GB, TB (powers of 1000)";

impl FromStr for ByteSize {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (number, unit) = split_number(text, "a byte size", "\"50 MiB\"")?;
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(QuantityError(format!(
                    "unknown size unit {unit:?} in {text:?}: {BYTE_UNITS_HELP}"
                )));
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| too_large(text))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, name) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(size) {
                return write!(f, "{} {name}", self.0 / size);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<ByteSize>::new(
            "a byte size: an integer number of bytes or a string such as \"50 MiB\"",
            |bytes| Some(ByteSize(bytes)),
        ))
    }
}

/// A span of time with millisecond resolution.
///
/// Written as a whole number and a unit: `ms`, `s`, `m` (minutes), `h`, `d` ("100ms", "30s",
/// "5m", "1h"), or as a bare TOML integer meaning seconds. Units are lower-case only, so "5M"
/// cannot be mistaken for months. Displays in the largest unit that divides it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimeSpan {
    millis: u64,
}

impl TimeSpan {
    pub const ZERO: TimeSpan = TimeSpan { millis: 0 };

    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1000,
        }
    }

    pub const fn from_mins(mins: u64) -> Self {
        Self::from_secs(mins * 60)
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.millis)
    }

    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }
}

impl From<TimeSpan> for Duration {
    fn from(span: TimeSpan) -> Duration {
        span.as_duration()
    }
}

const TIME_UNITS_HELP: &str = "use ms, s, m (minutes), h or d, e.g. \"100ms\", \"30s\", \"5m\"";

impl FromStr for TimeSpan {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (number, unit) = split_number(text, "a time span", "\"30s\"")?;
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(QuantityError(format!(
                    "{text:?} has no unit: {TIME_UNITS_HELP} (a bare integer, without quotes, means seconds)"
                )));
            }
            _ => {
                return Err(QuantityError(format!(
                    "unknown time unit {unit:?} in {text:?}: {TIME_UNITS_HELP}"
                )));
            }
        };
        number
            .checked_mul(millis_per_unit)
            .map(TimeSpan::from_millis)
            .ok_or_else(|| too_large(text))
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        if self.millis == 0 {
            return f.write_str("0s");
        }
        for (size, name) in UNITS {
            if self.millis.is_multiple_of(size) {
                return write!(f, "{}{name}", self.millis / size);
            }
        }
        write!(f, "{}ms", self.millis)
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<TimeSpan>::new(
            "a time span: an integer number of seconds or a string such as \"30s\"",
            |secs| secs.checked_mul(1000).map(TimeSpan::from_millis),
        ))
    }
}

/// Splits "50 MiB" into (50, "MiB"). The number must be a plain run of ASCII digits: no sign,
/// no fraction, no exponent; each of those gets its own message.
fn split_number<'t>(
    text: &'t str,
    what: &str,
    example: &str,
) -> Result<(u64, &'t str), QuantityError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, rest) = trimmed.split_at(digits_end);
    let unit = rest.trim_start();
    if trimmed.starts_with('-') {
        return Err(QuantityError(format!(
            "{what} cannot be negative: {text:?}"
        )));
    }
    if digits.is_empty() {
        return Err(QuantityError(format!(
            "{text:?} is not {what}: expected a whole number and a unit, such as {example}"
        )));
    }
    if rest.starts_with(['.', ','])
        || rest.starts_with(['e', 'E']) && rest[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(QuantityError(format!(
            "{text:?}: only whole numbers are accepted; use a smaller unit instead of a fraction"
        )));
    }
    let number = digits.parse::<u64>().map_err(|_| too_large(text))?;
    Ok((number, unit))
}

fn too_large(text: &str) -> QuantityError {
    QuantityError(format!("{text:?} is too large"))
}

/// Accepts a non-negative integer (converted by `from_integer`, which returns `None` on overflow)
/// or a string (parsed with `FromStr`), and names the expected form in every error.
struct QuantityVisitor<T> {
    expecting: &'static str,
    from_integer: fn(u64) -> Option<T>,
}

impl<T> QuantityVisitor<T> {
    fn new(expecting: &'static str, from_integer: fn(u64) -> Option<T>) -> Self {
        Self {
            expecting,
            from_integer,
        }
    }
}

impl<T: FromStr<Err = QuantityError>> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        (self.from_integer)(value).ok_or_else(|| E::custom(format!("{value} is too large")))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        let value = u64::try_from(value)
            .map_err(|_| E::custom(format!("{value} is negative; expected {}", self.expecting)))?;
        self.visit_u64(value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        Err(E::invalid_value(Unexpected::Float(value), &self))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        value
            .parse()
            .map_err(|error: QuantityError| E::custom(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(text: &str) -> Result<u64, String> {
        text.parse::<ByteSize>()
            .map(ByteSize::as_u64)
            .map_err(|e| e.to_string())
    }

    fn span(text: &str) -> Result<u64, String> {
        text.parse::<TimeSpan>()
            .map(TimeSpan::as_millis)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn byte_sizes_parse_in_binary_and_decimal_units() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("512", 512),
            ("512 B", 512),
            ("512b", 512),
            ("1 KiB", 1024),
            ("1K", 1024),
            ("1k", 1024),
            ("1 KB", 1000),
            ("1kb", 1000),
            ("50 MiB", 50 << 20),
            ("50M", 50 << 20),
            ("50 MB", 50_000_000),
            ("2 GiB", 2 << 30),
            ("2 GB", 2_000_000_000),
            ("3 TiB", 3 << 40),
            ("3 TB", 3_000_000_000_000),
            ("  7   MiB  ", 7 << 20),
        ];
        for &(text, expected) in cases {
            assert_eq!(size(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn byte_sizes_reject_nonsense_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("5 parsecs", "unknown size unit \"parsecs\""),
            ("-5 MiB", "cannot be negative"),
            ("1.5 MiB", "only whole numbers"),
            ("1e3", "only whole numbers"),
            ("MiB", "expected a whole number and a unit"),
            ("", "expected a whole number and a unit"),
            ("99999999999999999999", "too large"),
            ("20000000 TiB", "too large"),
            ("5 MiB extra", "unknown size unit"),
        ];
        for &(text, expected) in cases {
            let error = size(text).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn byte_sizes_display_in_a_form_that_parses_back() {
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (1000, "1000 B"),
            (1024, "1 KiB"),
            (1536, "1536 B"),
            (50 << 20, "50 MiB"),
            (1 << 30, "1 GiB"),
            (5 << 40, "5 TiB"),
            (u64::MAX, "18446744073709551615 B"),
        ];
        for &(bytes, text) in cases {
            assert_eq!(ByteSize(bytes).to_string(), text);
            assert_eq!(size(text), Ok(bytes));
        }
    }

    #[test]
    fn time_spans_parse_with_units() {
        let cases: &[(&str, u64)] = &[
            ("0s", 0),
            ("100ms", 100),
            ("30s", 30_000),
            ("30 s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
        ];
        for &(text, expected) in cases {
            assert_eq!(span(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn time_spans_reject_nonsense_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("5 parsecs", "unknown time unit \"parsecs\""),
            ("5M", "unknown time unit \"M\""),
            ("30", "has no unit"),
            ("-1s", "cannot be negative"),
            ("1.5s", "only whole numbers"),
            ("soon", "not a time span"),
            ("18446744073709551615s", "too large"),
            ("99999999999999999999ms", "too large"),
        ];
        for &(text, expected) in cases {
            let error = span(text).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn time_spans_display_in_a_form_that_parses_back() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (100, "100ms"),
            (1_500, "1500ms"),
            (30_000, "30s"),
            (90_000, "90s"),
            (300_000, "5m"),
            (5_400_000, "90m"),
            (3_600_000, "1h"),
            (86_400_000, "1d"),
        ];
        for &(millis, text) in cases {
            assert_eq!(TimeSpan::from_millis(millis).to_string(), text);
            assert_eq!(span(text), Ok(millis));
        }
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Quantities {
        size: ByteSize,
        span: TimeSpan,
    }

    #[test]
    fn integers_in_toml_mean_bytes_and_seconds() -> Result<(), toml::de::Error> {
        let parsed: Quantities = toml::from_str("size = 4096\nspan = 30\n")?;
        assert_eq!(
            parsed,
            Quantities {
                size: ByteSize(4096),
                span: TimeSpan::from_secs(30)
            }
        );
        Ok(())
    }

    #[test]
    fn toml_rejects_negative_fractional_and_overflowing_values() {
        let cases: &[(&str, &str)] = &[
            ("size = -1\nspan = 1", "negative"),
            ("size = 1\nspan = -1", "negative"),
            ("size = 1.5\nspan = 1", "expected a byte size"),
            ("size = 1\nspan = 2.5", "expected a time span"),
            ("size = 1\nspan = 9223372036854775807", "too large"),
            ("size = \"5 parsecs\"\nspan = 1", "unknown size unit"),
        ];
        for &(text, expected) in cases {
            let error = toml::from_str::<Quantities>(text)
                .expect_err(text)
                .to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn serialized_quantities_read_back_unchanged() -> Result<(), Box<dyn std::error::Error>> {
        let value = Quantities {
            size: ByteSize::mib(50),
            span: TimeSpan::from_millis(1_500),
        };
        let text = toml::to_string(&value)?;
        assert_eq!(text, "size = \"50 MiB\"\nspan = \"1500ms\"\n");
        assert_eq!(toml::from_str::<Quantities>(&text)?, value);
        Ok(())
    }
}
