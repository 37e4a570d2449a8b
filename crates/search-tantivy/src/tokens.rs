//! What is indexed and what is looked up, from normalised text.
//!
//! A body is indexed as its tokens: the runs of characters between its spaces (normalised
//! text has no other white space, and never two spaces in a row), each prefixed by its
//! chat's scope, so that one chat's tokens are one contiguous range of the term
//! dictionary. A term is looked up by scanning that range for the tokens it can occur in
//! ([`Piece`]), so the cost of a search grows with the chat's vocabulary, not with the
//! index, and the cost of indexing with a body's words, not with its characters.

use chatd_core::search::{ChatKey, MatchKind, Pass, term_match};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Longest piece of a term a lookup uses: a longer one is looked up by its first (or, for a
/// suffix, its last) `MAX_PIECE` characters, which only adds candidates.
const MAX_PIECE: usize = 256;
/// Tokens longer than this many characters are indexed as windows of it, every
/// [`MAX_PIECE`] characters, so that every piece lies within one window (and tantivy's own
/// limit on a term's length is never reached).
const WINDOW: usize = 2 * MAX_PIECE;

/// The prefix of every term of a chat: its key and a space, which no token holds.
pub fn scope(chat: ChatKey) -> String {
    format!("{} ", chat.0)
}

/// The first text after every term of the chat whose [`scope`] is given.
pub fn scope_end(scope: &str) -> String {
    // The scope ends in ' '; '!' is the next character.
    format!("{}!", &scope[..scope.len() - 1])
}

/// The text a document is indexed from: its chat's [`scope`], then the normalised body.
pub fn document_text(chat: ChatKey, normalized_body: &str) -> String {
    let scope = scope(chat);
    let mut text = String::with_capacity(scope.len() + normalized_body.len());
    text.push_str(&scope);
    text.push_str(normalized_body);
    text
}

/// A tantivy tokenizer over a [`document_text`]: emits the scope followed by each token of
/// the body (or each [`WINDOW`] of a long token).
#[derive(Debug, Clone, Copy)]
pub struct ScopedTokenizer;

impl ScopedTokenizer {
    pub const NAME: &'static str = "chatd_scoped_tokens";
}

/// The token stream of a [`ScopedTokenizer`].
#[derive(Debug)]
pub struct ScopedStream<'a> {
    text: &'a str,
    scope_len: usize,
    /// Byte ranges of what is still to emit, last first.
    pending: Vec<(usize, usize)>,
    token: Token,
}

impl Tokenizer for ScopedTokenizer {
    type TokenStream<'a> = ScopedStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ScopedStream<'a> {
        let scope_len = text.find(' ').map_or(text.len(), |i| i + 1);
        let mut pending = Vec::new();
        let mut at = scope_len;
        for token in text[scope_len..].split(' ') {
            let from = at;
            at += token.len() + 1;
            if !token.is_empty() {
                windows(token, |a, b| pending.push((from + a, from + b)));
            }
        }
        pending.reverse();
        ScopedStream { text, scope_len, pending, token: Token::default() }
    }
}

impl TokenStream for ScopedStream<'_> {
    fn advance(&mut self) -> bool {
        let Some((from, to)) = self.pending.pop() else { return false };
        let t = &mut self.token;
        t.text.clear();
        t.text.push_str(&self.text[..self.scope_len]);
        t.text.push_str(&self.text[from..to]);
        t.offset_from = from;
        t.offset_to = to;
        t.position = t.position.wrapping_add(1);
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Calls `f` with the byte range of each window a token is indexed as: the token itself, or,
/// past [`WINDOW`] characters, a window of `WINDOW` characters every [`MAX_PIECE`] and a
/// last one ending with the token. Every run of at most `MAX_PIECE` characters then lies
/// within a window, the first window begins with the token and the last ends with it.
fn windows(token: &str, mut f: impl FnMut(usize, usize)) {
    if token.len() <= WINDOW {
        // At most WINDOW bytes, so at most WINDOW characters.
        return f(0, token.len());
    }
    let bounds: Vec<usize> = token.char_indices().map(|(i, _)| i).chain([token.len()]).collect();
    let chars = bounds.len() - 1;
    if chars <= WINDOW {
        return f(0, token.len());
    }
    let mut start = 0;
    while start + WINDOW < chars {
        f(bounds[start], bounds[start + WINDOW]);
        start += MAX_PIECE;
    }
    f(bounds[chars - WINDOW], token.len());
}

/// What one part of a term needs of a token (every test is a superset of the exact one
/// where the part is cut to [`MAX_PIECE`] characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The token holds the text.
    Contains(String),
    /// The token holds the text bounded by non-word characters or its ends.
    WholeWord(String),
    /// The token ends with the text.
    Ends(String),
    /// The token is the text.
    Is(String),
    /// The token begins with the text.
    Starts(String),
}

impl Piece {
    /// Whether a token (without its scope) passes.
    pub fn accepts(&self, token: &str) -> bool {
        match self {
            Piece::Contains(p) => token.contains(p.as_str()),
            Piece::WholeWord(p) => term_match(token, p) == Some(MatchKind::WholeWords),
            Piece::Ends(p) => token.ends_with(p.as_str()),
            Piece::Is(p) => token == p,
            Piece::Starts(p) => token.starts_with(p.as_str()),
        }
    }
}

/// The pieces a body must have a token for each of, to contain a normalised term (for
/// [`Pass::WholeWords`], to contain it as whole words). A term without a space lies within
/// one token; `a b c` needs a token ending with `a`, the token `b` and one beginning with
/// `c`.
pub fn pieces(term: &str, pass: Pass) -> Vec<Piece> {
    let first = |s: &str| s.chars().take(MAX_PIECE).collect::<String>();
    let last = |s: &str| {
        let n = s.chars().count();
        s.chars().skip(n.saturating_sub(MAX_PIECE)).collect::<String>()
    };
    let fits = |s: &str| s.chars().nth(MAX_PIECE).is_none();
    let parts: Vec<&str> = term.split(' ').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => Vec::new(),
        [one] if pass == Pass::WholeWords && fits(one) => vec![Piece::WholeWord((*one).to_owned())],
        [one] => vec![Piece::Contains(first(one))],
        [head, middle @ .., tail] => std::iter::once(Piece::Ends(last(head)))
            .chain(
                middle
                    .iter()
                    .map(|m| if fits(m) { Piece::Is((*m).to_owned()) } else { Piece::Contains(first(m)) }),
            )
            .chain([Piece::Starts(first(tail))])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        let mut tokenizer = ScopedTokenizer;
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    /// The body's tokens as indexed, without their scope.
    fn indexed(body: &str) -> Vec<String> {
        tokens(&document_text(ChatKey(7), body)).into_iter().map(|t| t["7 ".len()..].to_owned()).collect()
    }

    /// Whether the index proposes `body` for `term`: every piece accepts some token.
    fn proposed(body: &str, term: &str, pass: Pass) -> bool {
        let tokens = indexed(body);
        pieces(term, pass).iter().all(|p| tokens.iter().any(|t| p.accepts(t)))
    }

    #[test]
    fn tokens_are_the_runs_between_spaces_each_with_the_chat_s_scope() {
        assert_eq!(
            tokens(&document_text(ChatKey(42), "go-kart, c++ 你好! 🎉")),
            ["42 go-kart,", "42 c++", "42 你好!", "42 🎉"]
        );
        assert!(tokens(&document_text(ChatKey(42), "")).is_empty());
        let scope = scope(ChatKey(42));
        assert_eq!(scope, "42 ");
        // The range of chat 42 holds none of chat 421's terms.
        assert!(scope.as_str() < "42 a" && "42 \u{10FFFF}" < scope_end(&scope).as_str());
        assert!(!("421 a" >= scope.as_str() && "421 a" < scope_end(&scope).as_str()));
    }

    #[test]
    fn a_long_token_is_indexed_as_windows_that_hold_every_piece() {
        let long: String = (0..1300).map(|i| char::from_u32(0x4E00 + i).unwrap()).collect();
        let windows = indexed(&long);
        assert_eq!(windows.len(), 5, "windows at 0, 256, 512, 768 and the last 512");
        assert!(windows.iter().all(|w| w.chars().count() == WINDOW));
        assert!(long.starts_with(&windows[0]) && long.ends_with(&windows[4]));
        let chars: Vec<char> = long.chars().collect();
        for start in (0..chars.len() - MAX_PIECE).step_by(37) {
            let piece: String = chars[start..start + MAX_PIECE].iter().collect();
            assert!(windows.iter().any(|w| w.contains(&piece)), "piece at {start}");
        }
    }

    #[test]
    fn every_contained_term_is_proposed() {
        let body = "stuff with rails and go — 你好世界 🎉 c++.";
        for term in
            ["s", "go", "tuf", "rails and", "s and g", "你好世界", "🎉", "with rails and go — 你好", "+."]
        {
            assert!(body.contains(term), "{term}");
            assert!(proposed(body, term, Pass::Substrings), "{term}");
        }
        for term in ["go", "rails and", "c++", "你好世界", "🎉"] {
            assert!(proposed(body, term, Pass::WholeWords), "{term}");
        }
        // Without positions the index cannot order tokens ("and rails" is proposed: the
        // core's check drops it), but a piece no token passes rules the body out.
        for term in ["x", "zz go", "go zz", "stuff wit rails"] {
            assert!(!proposed(body, term, Pass::Substrings), "{term}");
        }
        assert!(!proposed(body, "tuf", Pass::WholeWords));
    }

    #[test]
    fn long_terms_are_looked_up_by_their_ends_and_still_find_long_tokens() {
        let word: String = "abcdefghij".repeat(80);
        let body = format!("x{word}y z{word}");
        for term in [format!("x{word}"), format!("{word}y z{word}"), format!("{word}y z")] {
            assert!(body.contains(&term));
            assert!(proposed(&body, &term, Pass::Substrings), "{}", term.len());
            assert!(proposed(&body, &term, Pass::WholeWords), "{}", term.len());
        }
        assert!(pieces(&"a".repeat(900), Pass::WholeWords) == [Piece::Contains("a".repeat(MAX_PIECE))]);
    }
}
