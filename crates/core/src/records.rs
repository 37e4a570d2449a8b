//! What reads return. Field names follow the JSON of SPEC §3; the server adds the aliases
//! the old API's clients expect.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{AppToken, ChatNumber, MessageNumber};

/// A point in time with millisecond precision, stored as milliseconds since the Unix epoch.
/// It renders as RFC 3339 in UTC with milliseconds (`2019-11-11T19:14:51.589Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0));
        humantime::format_rfc3339_millis(t).fmt(f)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A registered client application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub token: AppToken,
    pub name: String,
    /// Number of chats; exact at every commit in the embedded mode.
    pub chats_count: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A chat of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub number: ChatNumber,
    /// Number of messages; exact at every commit in the embedded mode.
    pub messages_count: i64,
    /// The highest message number (0: none). New messages are numbered after it. It equals
    /// `messages_count` except in a chat imported with gaps in its numbers (SPEC §9).
    pub last_number: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A message of a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub number: MessageNumber,
    pub body: String,
    pub created_at: Timestamp,
    /// Changes when the body is edited.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn timestamps_render_as_rfc3339_utc_with_millis() {
        assert_eq!(Timestamp::from_millis(1_573_499_691_589).to_string(), "2019-11-11T19:14:51.589Z");
        assert_eq!(Timestamp::from_millis(0).to_string(), "1970-01-01T00:00:00.000Z");
    }
}
