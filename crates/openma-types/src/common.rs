//! Shapes shared by every resource: timestamps, metadata, pages, deletions, errors.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Declares a single-valued string enum, used for the constant `type` tags of objects.
#[macro_export]
macro_rules! literal {
    ($(#[$m:meta])* $name:ident = $value:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            #[default]
            #[serde(rename = $value)]
            Value,
        }
    };
}

/// Key-value metadata as stored and returned (`{}` when empty).
pub type Metadata = BTreeMap<String, String>;

/// A metadata patch: a string upserts a key, `null` deletes it.
pub type MetadataPatch = BTreeMap<String, Option<String>>;

/// An instant, kept as microseconds since the Unix epoch (UTC) and rendered as RFC 3339.
///
/// Microseconds keep ordering exact in both databases (an integer column) while matching
/// the precision the SDK keeps when it parses timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `self`, or one microsecond after `earlier` if `self` is not later than it: a new
    /// version's `updated_at` always moves, even within one clock tick, because
    /// optimistic updates compare it.
    pub fn strictly_after(self, earlier: Timestamp) -> Self {
        self.max(Self(earlier.0 + 1))
    }

    /// Seconds elapsed from `self` to `later` (never negative).
    pub fn seconds_until(self, later: Timestamp) -> f64 {
        ((later.0 - self.0).max(0)) as f64 / 1_000_000.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.to_datetime();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.microsecond()
        )
    }
}

/// Error for a timestamp that is neither RFC 3339 nor a naive ISO 8601 date-time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTimestamp(pub String);

impl fmt::Display for InvalidTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not an RFC 3339 timestamp", self.0)
    }
}

impl std::error::Error for InvalidTimestamp {}

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;

    /// Accepts RFC 3339 (`Z` or an offset) and, as Python's `isoformat()` of a naive
    /// datetime produces, a date-time without offset, read as UTC.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let dt = OffsetDateTime::parse(s, &Rfc3339).or_else(|_| {
            let naive = time::macros::format_description!(
                version = 2,
                "[year]-[month]-[day][first [T] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            PrimitiveDateTime::parse(s, naive).map(|p| p.assume_utc())
        });
        let dt = dt.map_err(|_| InvalidTimestamp(s.to_owned()))?;
        let micros = dt.unix_timestamp_nanos() / 1000;
        i64::try_from(micros).map(Timestamp).map_err(|_| InvalidTimestamp(s.to_owned()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Distinguishes an omitted key (`None`) from an explicit `null` (`Some(None)`), as
/// update endpoints require ("omitted ≠ null").
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A page of a cursor-paginated list (`PageCursor` in the SDK).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListPage<T> {
    pub data: Vec<T>,
    pub next_page: Option<String>,
}

/// A page of a list that can also be walked backwards (`BidirectionalPageCursor`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BidiPage<T> {
    pub data: Vec<T>,
    pub next_page: Option<String>,
    pub prev_page: Option<String>,
}

/// `{"id": …, "type": "<resource>_deleted"}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

literal!(
    /// The `type` of an error envelope.
    ErrorTag = "error"
);

/// Anthropic's error envelope: `{"type":"error","error":{…},"request_id":…}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEnvelope {
    #[serde(rename = "type")]
    pub tag: ErrorTag,
    pub error: ErrorDetail,
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// One of the SDK's `ErrorType` values, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorCodeDetails>,
    /// With `memory_path_conflict_error`: the memory that already holds the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicting_memory_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorCodeDetails {
    /// A stable machine-readable code, e.g. `invalid_metadata`.
    pub error_code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_rfc3339_with_microseconds() {
        let t: Timestamp = "2026-01-02T03:04:05.123456789+00:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-02T03:04:05.123456Z");
        let naive: Timestamp = "2026-01-02T03:04:05".parse().unwrap();
        assert_eq!(naive.to_string(), "2026-01-02T03:04:05.000000Z");
        let offset: Timestamp = "2026-01-02T05:04:05+02:00".parse().unwrap();
        assert_eq!(offset, naive);
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn a_new_version_is_strictly_after_the_old_one() {
        let old = Timestamp::from_micros(1_000);
        assert_eq!(Timestamp::from_micros(5_000).strictly_after(old), Timestamp::from_micros(5_000));
        assert_eq!(Timestamp::from_micros(1_000).strictly_after(old), Timestamp::from_micros(1_001));
        assert_eq!(Timestamp::from_micros(900).strictly_after(old), Timestamp::from_micros(1_001));
    }
}
