//! Safe retries of creates (SPEC §8): a client names a create with an `Idempotency-Key`;
//! the store keeps the key, a fingerprint of the create's parameters and what it created, in
//! the transaction that creates it. A retry with the same key and fingerprint within the
//! window answers what was created then and writes nothing; the same key with another
//! fingerprint is refused ([`StoreError::IdempotencyKeyReused`](crate::StoreError)).
//!
//! Keys of `POST /applications` live in one scope of their own; keys of chat and message
//! creates are scoped to their application (a key names one create among all of the
//! application's creates, so a key used for a chat and then for a message is a reuse).

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{AppName, ChatNumber, InvalidInput, MessageBody};

/// How long a key is honoured after the create it names (SPEC §8: 24 hours).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Most expired keys one sweep deletes, so that a sweep is one short transaction.
pub const SWEEP_LIMIT: usize = 1000;

/// A client's name for one create: 1 to 255 printable ASCII characters (space to `~`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    /// Parses a header's raw value.
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidInput> {
        if raw.is_empty() {
            return Err(InvalidInput::Blank);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(InvalidInput::TooLong { max: Self::MAX_LEN, unit: "characters" });
        }
        if !raw.iter().all(|b| (b' '..=b'~').contains(b)) {
            return Err(InvalidInput::NotPrintableAscii);
        }
        // Only ASCII bytes are left, so this cannot fail.
        String::from_utf8(raw.to_vec()).map(IdempotencyKey).map_err(|_| InvalidInput::NotPrintableAscii)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    /// Keys are the client's; logs show only their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({} chars)", self.0.len())
    }
}

/// A digest of a create's kind and parameters, stored with its key. SHA-256 over a fixed
/// encoding, so it is the same in every process and every version that keeps the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// `POST /applications` with this name.
    pub fn application(name: &AppName) -> Self {
        Self::of(b"application", &[name.as_str().as_bytes()])
    }

    /// `POST /applications/{token}/chats` (the token is the key's scope).
    pub fn chat() -> Self {
        Self::of(b"chat", &[])
    }

    /// `POST /applications/{token}/chats/{chat}/messages` with this body.
    pub fn message(chat: ChatNumber, body: &MessageBody) -> Self {
        Self::of(b"message", &[&chat.get().to_be_bytes(), body.as_str().as_bytes()])
    }

    /// Each part is preceded by its length, so no two lists of parts encode alike.
    fn of(kind: &[u8], parts: &[&[u8]]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"chatd idempotency v1\0");
        hash.update(kind);
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Fingerprint(hash.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `stored` (as a store read it back) is this fingerprint.
    pub fn matches(&self, stored: &[u8]) -> bool {
        self.0.as_slice() == stored
    }
}

/// A key with the fingerprint of the create it comes with: what a store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotent {
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
}

impl Idempotent {
    /// Pairs an optional key with the fingerprint `of` computes (only when a key is given).
    pub fn new(key: Option<IdempotencyKey>, of: impl FnOnce() -> Fingerprint) -> Option<Self> {
        key.map(|key| Idempotent { key, fingerprint: of() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert_eq!(IdempotencyKey::parse(b"a").unwrap().as_str(), "a");
        assert_eq!(IdempotencyKey::parse(b" ~Key-1:{}").unwrap().as_str(), " ~Key-1:{}");
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        assert_eq!(IdempotencyKey::parse(b""), Err(InvalidInput::Blank));
        assert!(matches!(IdempotencyKey::parse(&[b'k'; 256]), Err(InvalidInput::TooLong { max: 255, .. })));
        for bad in [&b"tab\there"[..], b"del\x7f", b"nul\0", "café".as_bytes(), b"\x80"] {
            assert_eq!(IdempotencyKey::parse(bad), Err(InvalidInput::NotPrintableAscii), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints_tell_kinds_and_parameters_apart_and_do_not_change() {
        let body = |s: &str| MessageBody::parse(s.to_owned(), 100).unwrap();
        let one: ChatNumber = "1".parse().unwrap();
        let two: ChatNumber = "2".parse().unwrap();
        let name = AppName::parse("app".to_owned()).unwrap();
        assert_eq!(Fingerprint::message(one, &body("hi")), Fingerprint::message(one, &body("hi")));
        let all = [
            Fingerprint::chat(),
            Fingerprint::application(&name),
            Fingerprint::message(one, &body("hi")),
            Fingerprint::message(two, &body("hi")),
            Fingerprint::message(one, &body("hi!")),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Stored fingerprints outlive the process: the encoding must never change silently
        // (this digest was computed apart from this code, by Python's hashlib).
        let stored = Fingerprint::message(one, &body("hi"));
        let hex: String = stored.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, "3637560a604d20ae893c54d830c09699429e9a193cc29b4df3b926644745351b",
            "change only with a new encoding version"
        );
    }
}
