//! The rules for the old system's irregular rows, one per irregularity, applied the same
//! way every time. Numbers are ruled on by the target (it alone knows which are taken); the
//! rest is decided here, from the row alone.

use super::{ImportedApplication, ImportedRow, LegacyApplication, LegacyChat, LegacyMessage, NoteKind};
use crate::{AppName, AppToken, Timestamp};

/// The name given to an application whose name is null or blank.
pub const BLANK_NAME: &str = "(unnamed)";
/// The body given to a message whose body is null or blank: kept, so that its number and
/// place in the chat stay, and visibly empty.
pub const BLANK_BODY: &str = "(empty)";

/// Token, name and times of an application. A token chatd cannot serve (null, blank, or
/// not 1–64 of `A–Z a–z 0–9 - _`) is replaced by a new one.
pub(super) fn application(
    row: LegacyApplication,
    now: Timestamp,
) -> Result<ImportedApplication, getrandom::Error> {
    let mut notes = Vec::new();
    let token = match row.token.as_deref().and_then(AppToken::parse) {
        Some(token) => token,
        None => {
            notes.push(NoteKind::NewToken);
            AppToken::generate()?
        }
    };
    let name = text(row.name, BLANK_NAME, AppName::MAX_CHARS, |s| s.chars().count(), &mut notes);
    let (created_at, updated_at) = times(row.created_at, row.updated_at, now);
    Ok(ImportedApplication {
        legacy_id: row.id,
        token,
        name,
        created_at,
        updated_at,
        old_count: row.chat_count,
        notes,
    })
}

pub(super) fn chat(row: LegacyChat, now: Timestamp) -> ImportedRow {
    let (created_at, updated_at) = times(row.created_at, row.updated_at, now);
    ImportedRow {
        legacy_id: row.id,
        parent: row.application_id,
        number: row.number,
        body: String::new(),
        created_at,
        updated_at,
        old_count: row.message_count,
        notes: Vec::new(),
    }
}

/// A message; a body longer than `max_body_bytes` (the API's limit) is kept whole.
pub(super) fn message(row: LegacyMessage, now: Timestamp, max_body_bytes: usize) -> ImportedRow {
    let mut notes = Vec::new();
    let body = text(row.body, BLANK_BODY, max_body_bytes, str::len, &mut notes);
    let (created_at, updated_at) = times(row.created_at, row.updated_at, now);
    ImportedRow {
        legacy_id: row.id,
        parent: row.chat_id,
        number: row.number,
        body,
        created_at,
        updated_at,
        old_count: None,
        notes,
    }
}

/// A name or body: null or blank becomes `blank`; NUL characters become U+FFFD; longer
/// than `max` (as `measure` counts) is kept and noted.
fn text(
    value: Option<String>,
    blank: &str,
    max: usize,
    measure: fn(&str) -> usize,
    notes: &mut Vec<NoteKind>,
) -> String {
    let Some(mut value) = value.filter(|v| !v.trim().is_empty()) else {
        notes.push(NoteKind::Placeholder);
        return blank.to_owned();
    };
    if value.contains('\0') {
        value = value.replace('\0', "\u{FFFD}");
        notes.push(NoteKind::NulReplaced);
    }
    if measure(&value) > max {
        notes.push(NoteKind::KeptLong);
    }
    value
}

/// Times as stored; a null one takes the other's value, both null the import's time.
fn times(created: Option<Timestamp>, updated: Option<Timestamp>, now: Timestamp) -> (Timestamp, Timestamp) {
    let created = created.or(updated).unwrap_or(now);
    (created, updated.unwrap_or(created))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: Option<&str>, token: Option<&str>) -> LegacyApplication {
        LegacyApplication {
            id: 7,
            name: name.map(str::to_owned),
            token: token.map(str::to_owned),
            chat_count: Some(3),
            created_at: Some(Timestamp::from_millis(1_000)),
            updated_at: None,
        }
    }

    #[test]
    fn a_servable_token_is_kept_and_any_other_is_replaced_and_noted() {
        let now = Timestamp::from_millis(5);
        let kept = application(app(Some("old"), Some("AbC-12_x")), now).unwrap();
        assert_eq!(kept.token.as_str(), "AbC-12_x");
        assert!(kept.notes.is_empty());
        for token in [None, Some(""), Some("  "), Some("a+b/c="), Some(&*"x".repeat(65))] {
            let replaced = application(app(Some("old"), token), now).unwrap();
            assert_eq!(replaced.notes, [NoteKind::NewToken], "{token:?}");
            assert_eq!(replaced.token.as_str().len(), 24);
        }
    }

    #[test]
    fn names_blank_long_or_with_nul_follow_their_rules() {
        let now = Timestamp::from_millis(5);
        for blank in [None, Some(""), Some(" \t")] {
            let a = application(app(blank, Some("t")), now).unwrap();
            assert_eq!((a.name.as_str(), a.notes.as_slice()), (BLANK_NAME, &[NoteKind::Placeholder][..]));
        }
        let long = "é".repeat(81);
        let a = application(app(Some(&long), Some("t")), now).unwrap();
        assert_eq!((a.name, a.notes), (long, vec![NoteKind::KeptLong]));
        let a = application(app(Some(&"é".repeat(80)), Some("t")), now).unwrap();
        assert!(a.notes.is_empty());
        let a = application(app(Some("a\0b"), Some("t")), now).unwrap();
        assert_eq!((a.name.as_str(), a.notes.as_slice()), ("a\u{FFFD}b", &[NoteKind::NulReplaced][..]));
    }

    #[test]
    fn bodies_follow_their_rules_and_times_fill_each_other() {
        let now = Timestamp::from_millis(99);
        let msg = |body: Option<&str>, created: Option<i64>, updated: Option<i64>| LegacyMessage {
            id: 1,
            chat_id: 2,
            number: None,
            body: body.map(str::to_owned),
            created_at: created.map(Timestamp::from_millis),
            updated_at: updated.map(Timestamp::from_millis),
        };
        let m = message(msg(None, Some(1), Some(2)), now, 10);
        assert_eq!((m.body.as_str(), m.notes.as_slice()), (BLANK_BODY, &[NoteKind::Placeholder][..]));
        assert_eq!((m.created_at.as_millis(), m.updated_at.as_millis()), (1, 2));
        let m = message(msg(Some("\n "), None, Some(2)), now, 10);
        assert_eq!(m.body, BLANK_BODY);
        assert_eq!((m.created_at.as_millis(), m.updated_at.as_millis()), (2, 2));
        let m = message(msg(Some("12345678901"), Some(3), None), now, 10);
        assert_eq!((m.body.as_str(), m.notes.as_slice()), ("12345678901", &[NoteKind::KeptLong][..]));
        assert_eq!((m.created_at.as_millis(), m.updated_at.as_millis()), (3, 3));
        let m = message(msg(Some("ok"), None, None), now, 10);
        assert!(m.notes.is_empty());
        assert_eq!((m.created_at, m.updated_at), (now, now));
    }
}
