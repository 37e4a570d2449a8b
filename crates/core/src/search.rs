//! Partial-text search, the domain half (SPEC §5): normalisation, keyword parsing, exact
//! verification and ranking. Indexes only propose candidates; what is answered is decided
//! here, against the message bodies themselves, so results equal a brute-force substring
//! filter whatever the index does.
//!
//! A message matches when every term of the keyword is a substring of its body after the
//! same [`normalize`] on both sides. Terms are split on white space; a double-quoted part is
//! one term, spaces included. Results rank whole-word matches (every term bounded by
//! non-alphanumeric characters or the ends of the body) before matches inside words, then
//! newest (highest number) first.

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::error::StoreResult;
use crate::{AppToken, ChatNumber, InvalidInput, Message, MessageNumber};

/// Characters of a keyword, at most (SPEC §5).
pub const MAX_KEYWORD_CHARS: usize = 256;
/// Results per page by default and at most (SPEC §5).
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// Deepest result a request may reach (`offset + limit`): deeper pages would verify
/// unboundedly many candidates.
pub const MAX_DEPTH: usize = 10_000;

/// Folds text for matching: compatibility decomposition (NFKD), lower case, NFKD again
/// (lower-casing can produce decomposable characters), diacritics and other combining marks
/// removed (Latin accents, Arabic tashkeel), Arabic tatweel and invisible format characters
/// removed, final sigma folded, and every run of white space made one space. Applied
/// identically to bodies and keywords.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() { normalize_ascii(text) } else { normalize_unicode(text) }
}

fn normalize_unicode(text: &str) -> String {
    let folded = text.nfkd().flat_map(char::to_lowercase).nfkd();
    let kept = folded.filter(|&c| !is_combining_mark(c) && !is_ignorable(c));
    single_spaced(text.len(), kept.map(|c| if c == 'ς' { 'σ' } else { c }))
}

/// [`normalize_unicode`] of ASCII text, which has nothing to decompose or remove: lower
/// case only. Most bodies are ASCII, and the general path is a visible share of what the
/// indexer spends on a message.
fn normalize_ascii(text: &str) -> String {
    single_spaced(text.len(), text.chars().map(|c| c.to_ascii_lowercase()))
}

/// `chars` with every run of white space (Unicode's: the vertical tab too) made one space
/// and none at either end.
fn single_spaced(capacity: usize, chars: impl Iterator<Item = char>) -> String {
    let mut out = String::with_capacity(capacity);
    let mut pending_space = false;
    for c in chars {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

fn is_ignorable(c: char) -> bool {
    matches!(c, '\u{0640}' | '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}')
}

/// Characters that make up words, for whole-word ranking.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// A parsed keyword: its normalised terms, each non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    terms: Vec<String>,
}

impl Keyword {
    /// Parses a raw keyword. Blank, over-long, or nothing left after normalisation is refused.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.chars().count() > MAX_KEYWORD_CHARS {
            return Err(InvalidInput::TooLong { max: MAX_KEYWORD_CHARS, unit: "characters" });
        }
        let mut terms = Vec::new();
        // Quotes pair up left to right; a last unpaired quote is an ordinary character.
        let paired = raw.matches('"').count() / 2 * 2;
        let mut quotes_seen = 0;
        let mut current = String::new();
        let mut in_quote = false;
        let mut push = |s: &mut String| {
            let t = normalize(s);
            if !t.is_empty() && !terms.contains(&t) {
                terms.push(t);
            }
            s.clear();
        };
        for c in raw.chars() {
            if c == '"' && quotes_seen < paired {
                quotes_seen += 1;
                push(&mut current);
                in_quote = !in_quote;
            } else if c.is_whitespace() && !in_quote {
                push(&mut current);
            } else {
                current.push(c);
            }
        }
        push(&mut current);
        if terms.is_empty() {
            return Err(InvalidInput::Blank);
        }
        Ok(Keyword { terms })
    }

    /// The normalised terms, in keyword order, without duplicates.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// How a normalised body matches: `None` if some term is missing.
    pub fn matches(&self, normalized_body: &str) -> Option<MatchKind> {
        let mut kind = MatchKind::WholeWords;
        for term in &self.terms {
            match term_match(normalized_body, term)? {
                MatchKind::WholeWords => {}
                MatchKind::InsideWords => kind = MatchKind::InsideWords,
            }
        }
        Some(kind)
    }
}

/// How well a body matched, for ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchKind {
    /// Every term occurs bounded by non-word characters somewhere.
    WholeWords,
    /// Every term occurs, some only inside words.
    InsideWords,
}

fn term_match(body: &str, term: &str) -> Option<MatchKind> {
    let mut found = false;
    let mut from = 0;
    // Every occurrence, overlapping ones included ("a-a" in "ba-a-a" occurs at 1 and 3).
    while let Some(at) = body[from..].find(term) {
        let start = from + at;
        from = start + body[start..].chars().next().map_or(1, char::len_utf8);
        found = true;
        let end = start + term.len();
        let before = body[..start].chars().next_back();
        let after = body[end..].chars().next();
        let open = before.is_none_or(|c| !is_word_char(c) || !term.starts_with(is_word_char));
        let close = after.is_none_or(|c| !is_word_char(c) || !term.ends_with(is_word_char));
        if open && close {
            return Some(MatchKind::WholeWords);
        }
    }
    found.then_some(MatchKind::InsideWords)
}

/// A backend's stable, internal identity of a chat. Never shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChatKey(pub i64);

/// Which candidates an index is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Messages that may contain every term as whole words (a superset is fine).
    WholeWords,
    /// Messages that may contain every term as a substring (a superset is fine; missing
    /// one that does is a bug).
    Substrings,
}

/// Proposes candidates. Implemented by the search index of each mode.
pub trait CandidateIndex: Send + Sync {
    /// Numbers of the chat's messages that may match, in any order.
    fn candidates(&self, chat: ChatKey, keyword: &Keyword, pass: Pass) -> StoreResult<Vec<MessageNumber>>;
}

/// Reads what verification needs. Implemented by the store of each mode.
pub trait MessageSource: Send + Sync {
    /// The chat's internal key, or which of application and chat is missing.
    fn chat_key(&self, token: &AppToken, chat: ChatNumber) -> StoreResult<ChatKey>;
    /// The chat's messages with these numbers (those that exist), in any order.
    fn messages(&self, chat: ChatKey, numbers: &[MessageNumber]) -> StoreResult<Vec<Message>>;
}

/// One change of a message, as the index is fed: its newest state at sequence `seq`.
#[derive(Debug, Clone)]
pub struct Change {
    /// Position in the store's change sequence (commit order).
    pub seq: i64,
    /// The message's stable internal identity (an edit keeps it).
    pub message: i64,
    pub chat: ChatKey,
    pub number: MessageNumber,
    pub body: String,
    /// An edit of a message that was indexed before (a new message replaces nothing, and
    /// deleting what is not there costs the index a lookup per segment).
    pub replaces: bool,
}

/// The store's changes in commit order, for feeding an index. Implemented by the store.
pub trait ChangeFeed: Send + Sync {
    /// Up to `limit` changes with a sequence above `after`, in sequence order.
    fn changes_after(&self, after: i64, limit: usize) -> StoreResult<Vec<Change>>;
    /// The highest sequence committed so far.
    fn last_seq(&self) -> StoreResult<i64>;
}

/// One search request, validated.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub keyword: Keyword,
    pub limit: usize,
    pub offset: usize,
}

/// Messages of a chat matching the keyword, best first. Blocking: run it off the async
/// runtime's worker threads.
pub fn search(
    source: &dyn MessageSource,
    index: &dyn CandidateIndex,
    token: &AppToken,
    chat: ChatNumber,
    request: &SearchRequest,
) -> StoreResult<Vec<Message>> {
    let key = source.chat_key(token, chat)?;
    let wanted = request.offset + request.limit;
    let mut out: Vec<Message> = Vec::with_capacity(wanted.min(MAX_LIMIT));
    let mut seen: HashSet<MessageNumber> = HashSet::new();
    // Whole-word matches first; the second pass takes every other match (also a whole-word
    // one the first pass's candidates missed, so that no match is ever dropped).
    for (pass, wanted_kind) in [(Pass::WholeWords, Some(MatchKind::WholeWords)), (Pass::Substrings, None)] {
        if out.len() >= wanted {
            // Whole-word matches filled the page: matches inside words would rank after it.
            break;
        }
        let mut rest = index.candidates(key, &request.keyword, pass)?;
        rest.retain(|n| !seen.contains(n));
        while out.len() < wanted && !rest.is_empty() {
            // The newest VERIFY_CHUNK candidates, without sorting all of them: a keyword
            // matching most of a large chat stops after a chunk or two.
            let k = VERIFY_CHUNK.min(rest.len());
            if k < rest.len() {
                rest.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
            }
            let chunk: Vec<MessageNumber> = rest.drain(..k).collect();
            let mut messages = source.messages(key, &chunk)?;
            messages.sort_unstable_by_key(|m| std::cmp::Reverse(m.number));
            for m in messages {
                let kind = request.keyword.matches(&normalize(&m.body));
                let fits = kind.is_some() && (wanted_kind.is_none() || kind == wanted_kind);
                if out.len() < wanted && fits && seen.insert(m.number) {
                    out.push(m);
                }
            }
        }
    }
    Ok(out.into_iter().skip(request.offset).collect())
}

/// Candidates verified per read of the store.
const VERIFY_CHUNK: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_folds_case_accents_tashkeel_and_space() {
        assert_eq!(normalize("Café  CRÈME\n"), "cafe creme");
        assert_eq!(normalize("ﬁne Ｆｕｌｌ"), "fine full");
        assert_eq!(normalize("مَرْحَبًا"), normalize("مرحبا"));
        assert_eq!(normalize("ـمرحـبا"), "مرحبا");
        assert_eq!(normalize("ΟΔΟΣ"), normalize("οδοσ"));
        // Compatibility characters that decompose into capitals still fold to lower case.
        assert_eq!(normalize("Acme™ 100㎒ 𝐇𝐞𝐥𝐥𝐨 ℍ"), "acmetm 100mhz hello h");
        assert_eq!(normalize("İstanbul"), "istanbul");
        assert_eq!(normalize("Ǆ ǅ"), "dz dz");
        assert_eq!(normalize(" Hi\t\x0b THERE \r\n"), "hi there");
    }

    proptest::proptest! {
        /// The ASCII shortcut is the general path, for every ASCII text (control characters
        /// and the vertical tab, which is white space to Unicode only, included).
        #[test]
        fn ascii_text_normalises_as_the_general_path_does(text in "[\\x00-\\x7f]{0,40}") {
            proptest::prop_assert_eq!(normalize_ascii(&text), normalize_unicode(&text));
        }
    }

    #[test]
    fn keywords_split_on_space_and_keep_quoted_phrases() {
        let k = Keyword::parse(r#"  Rails "and  GO" tuff "#).unwrap();
        assert_eq!(k.terms(), ["rails", "and go", "tuff"]);
        let k = Keyword::parse(r#"say "hi"#).unwrap();
        assert_eq!(k.terms(), ["say", "\"hi"]);
        assert_eq!(Keyword::parse("  "), Err(InvalidInput::Blank));
        assert_eq!(Keyword::parse(r#""""#), Err(InvalidInput::Blank));
        assert!(Keyword::parse(&"a".repeat(257)).is_err());
        assert!(Keyword::parse(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn matching_tells_whole_words_from_inside_words() {
        let k = Keyword::parse("go").unwrap();
        assert_eq!(k.matches("rails and go"), Some(MatchKind::WholeWords));
        assert_eq!(k.matches("going, go!"), Some(MatchKind::WholeWords));
        assert_eq!(k.matches("going"), Some(MatchKind::InsideWords));
        assert_eq!(k.matches("rails stuff"), None);
        let k = Keyword::parse("tuff rails").unwrap();
        assert_eq!(k.matches("rails stuff"), Some(MatchKind::InsideWords));
        let k = Keyword::parse("c++").unwrap();
        assert_eq!(k.matches("i like c++."), Some(MatchKind::WholeWords));
        // A later, overlapping occurrence can be the whole-word one.
        let k = Keyword::parse("a-a").unwrap();
        assert_eq!(k.matches("ba-a-a"), Some(MatchKind::WholeWords));
    }
}
