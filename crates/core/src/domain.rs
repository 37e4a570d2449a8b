//! Validated input types. Each is built only through its parser, so code that holds one
//! never re-checks it.

use std::fmt;
use std::str::FromStr;

/// Why a raw input was refused. The server maps each case to a status and an error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// Missing, empty or only white space.
    #[error("must not be blank")]
    Blank,
    /// Longer than allowed; `max` is in the unit of the type (characters or bytes).
    #[error("must be at most {max} {unit}")]
    TooLong { max: usize, unit: &'static str },
    /// Contains a character the type does not store (NUL or other control characters).
    #[error("must not contain control characters")]
    ControlCharacter,
    /// Holds a byte outside printable ASCII (space to `~`).
    #[error("must be printable ASCII characters")]
    NotPrintableAscii,
    /// Not a positive decimal integer that fits in 63 bits.
    #[error("must be a positive integer, written without sign or leading zeros")]
    NotAPositiveInteger,
    /// Not zero or a positive decimal integer that fits in 63 bits.
    #[error("must be 0 or a positive integer, written without sign or leading zeros")]
    NotANonNegativeInteger,
}

/// The secret that names an application. Clients present it in every path; it is the only
/// credential of an application, so it carries at least 128 bits of OS randomness.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AppToken(String);

impl AppToken {
    /// Characters of a generated token: 24 of 62 symbols is log2(62) × 24 ≈ 142.9 bits.
    const GENERATED_LEN: usize = 24;
    /// Longest token accepted in a path, so that tokens migrated from other systems work.
    const MAX_LEN: usize = 64;
    const ALPHABET: &'static [u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// A fresh token from the operating system's random source (unbiased: bytes ≥ 248 are
    /// drawn again so each symbol is equally likely).
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut out = String::with_capacity(Self::GENERATED_LEN);
        let mut buf = [0u8; 48];
        while out.len() < Self::GENERATED_LEN {
            getrandom::fill(&mut buf)?;
            for &b in &buf {
                if b < 248 && out.len() < Self::GENERATED_LEN {
                    out.push(Self::ALPHABET[usize::from(b % 62)] as char);
                }
            }
        }
        Ok(AppToken(out))
    }

    /// Parses a token from a path segment. `None` means it cannot be a token of ours; the
    /// server answers that exactly like an unknown token, so the format reveals nothing.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| AppToken(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppToken {
    /// Tokens are credentials: debug output and logs show only a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.0.chars().take(4).collect();
        write!(f, "AppToken({prefix}…)")
    }
}

/// Parses the canonical form of a positive number: ASCII digits only, 1 ..= i64::MAX.
/// One spelling per number (so one URL per resource): digits only, no leading zeros.
pub(crate) fn parse_positive(s: &str) -> Result<i64, InvalidInput> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidInput::NotAPositiveInteger);
    }
    match s.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(InvalidInput::NotAPositiveInteger),
    }
}

macro_rules! number_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// The number as stored; always ≥ 1.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = InvalidInput;
            fn try_from(n: i64) -> Result<Self, InvalidInput> {
                if n >= 1 { Ok($name(n)) } else { Err(InvalidInput::NotAPositiveInteger) }
            }
        }

        impl From<$name> for i64 {
            fn from(n: $name) -> i64 {
                n.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                parse_positive(s).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.0)
            }
        }
    };
}

number_type!(
    /// A chat's number within its application: 1, 2, 3… in creation order.
    ChatNumber
);
number_type!(
    /// A message's number within its chat: 1, 2, 3… in creation order.
    MessageNumber
);

/// An application's display name: not blank, at most 80 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName(String);

impl AppName {
    pub const MAX_CHARS: usize = 80;

    pub fn parse(s: String) -> Result<Self, InvalidInput> {
        if s.trim().is_empty() {
            return Err(InvalidInput::Blank);
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput::TooLong { max: Self::MAX_CHARS, unit: "characters" });
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidInput::ControlCharacter);
        }
        Ok(AppName(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A message's text: not blank, no NUL, at most a configured number of bytes (the server
/// chooses the limit; SPEC §3 sets the default at 64 KiB). Line breaks and tabs are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    /// The default limit of SPEC §3.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

    pub fn parse(s: String, max_bytes: usize) -> Result<Self, InvalidInput> {
        if s.trim().is_empty() {
            return Err(InvalidInput::Blank);
        }
        if s.len() > max_bytes {
            return Err(InvalidInput::TooLong { max: max_bytes, unit: "bytes" });
        }
        if s.contains('\0') {
            return Err(InvalidInput::ControlCharacter);
        }
        Ok(MessageBody(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_are_parseable_distinct_and_long() {
        let a = AppToken::generate().unwrap();
        let b = AppToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 24);
        assert_eq!(AppToken::parse(a.as_str()), Some(a));
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let t = AppToken::parse("abcdefghijklmnop").unwrap();
        assert_eq!(format!("{t:?}"), "AppToken(abcd…)");
    }

    #[test]
    fn tokens_refuse_foreign_characters() {
        for bad in ["", "a b", "a/b", "ä", "a%20", &"x".repeat(65)] {
            assert_eq!(AppToken::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers_accept_only_canonical_positive_integers() {
        assert_eq!("1".parse::<ChatNumber>().unwrap().get(), 1);
        assert_eq!("9223372036854775807".parse::<MessageNumber>().unwrap().get(), i64::MAX);
        for bad in ["", "0", "00", "007", "-1", "+1", "1.0", "1e3", " 1", "9223372036854775808", "abc"] {
            assert!(bad.parse::<ChatNumber>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_bodies_refuse_blank_and_oversized_input() {
        assert_eq!(AppName::parse("  ".into()), Err(InvalidInput::Blank));
        assert!(AppName::parse("é".repeat(80)).is_ok());
        assert!(matches!(AppName::parse("é".repeat(81)), Err(InvalidInput::TooLong { .. })));
        assert_eq!(AppName::parse("a\u{0}b".into()), Err(InvalidInput::ControlCharacter));
        assert_eq!(MessageBody::parse("\n\t ".into(), 10), Err(InvalidInput::Blank));
        assert!(MessageBody::parse("line\nbreak".into(), 10).is_ok());
        assert!(matches!(MessageBody::parse("12345678901".into(), 10), Err(InvalidInput::TooLong { .. })));
        assert_eq!(MessageBody::parse("a\0".into(), 10), Err(InvalidInput::ControlCharacter));
    }

    proptest! {
        #[test]
        fn number_parsing_round_trips(n in 1i64..=i64::MAX) {
            prop_assert_eq!(n.to_string().parse::<ChatNumber>().unwrap().get(), n);
        }

        #[test]
        fn number_parsing_never_panics_and_accepts_only_digits(s in "\\PC{0,24}") {
            if let Ok(n) = s.parse::<MessageNumber>() {
                prop_assert!(s.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(n.get() >= 1);
            }
        }

        #[test]
        fn accepted_names_are_never_blank_or_long(s in "\\PC{0,100}") {
            if let Ok(name) = AppName::parse(s.clone()) {
                prop_assert!(!name.as_str().trim().is_empty());
                prop_assert!(name.as_str().chars().count() <= AppName::MAX_CHARS);
            }
        }
    }
}
