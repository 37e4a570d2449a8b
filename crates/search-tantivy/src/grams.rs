//! What is indexed and what is looked up, from normalised text.

use chatd_core::search::is_word_char;
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Longest gram indexed. Terms longer than this are looked up by their grams of this length.
const N: usize = 3;
/// Ends the last 3-gram of a text, which is its last two characters and this: so that every
/// 2-character substring begins some 3-gram, and 2-character terms are looked up by prefix.
/// Normalised text may hold it too; that only adds candidates, which verification drops.
pub const END: char = '\u{3}';
/// Most grams one term is looked up by; more would cost time and add no exactness (the
/// core verifies every candidate).
const MAX_QUERY_GRAMS: usize = 12;

/// Which tokens a [`GramTokenizer`] makes of normalised text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grams {
    /// Every character; an ASCII one only the first time (positions are not used, and a
    /// repeat would only cost tantivy a lookup).
    Chars,
    /// Every 3-character substring, at the character position where it starts, and the last
    /// two characters followed by [`END`] after them.
    Tri,
    /// Every word (maximal run of word characters), at its ordinal.
    Words,
}

/// A tantivy tokenizer over already normalised text, making [`Grams`] without allocating a
/// string per token.
#[derive(Debug, Clone, Copy)]
pub struct GramTokenizer(pub Grams);

impl GramTokenizer {
    pub const CHARS: &'static str = "chatd_chars";
    pub const TRI: &'static str = "chatd_tri";
    pub const WORDS: &'static str = "chatd_words";
}

/// The token stream of a [`GramTokenizer`].
#[derive(Debug)]
pub struct GramStream<'a> {
    kind: Grams,
    text: &'a str,
    /// Byte offset of every character, and of the end.
    bounds: Vec<usize>,
    /// Next character index (Chars, Tri) or byte offset (Words).
    at: usize,
    ordinal: usize,
    /// ASCII characters already emitted (Chars), as bits.
    seen_ascii: u128,
    token: Token,
}

impl Tokenizer for GramTokenizer {
    type TokenStream<'a> = GramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> GramStream<'a> {
        let bounds = match self.0 {
            Grams::Words => Vec::new(),
            _ => text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect(),
        };
        GramStream { kind: self.0, text, bounds, at: 0, ordinal: 0, seen_ascii: 0, token: Token::default() }
    }
}

impl GramStream<'_> {
    fn emit(&mut self, from: usize, to: usize, position: usize) -> bool {
        self.token.text.clear();
        self.token.text.push_str(&self.text[from..to]);
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = position;
        true
    }
}

impl TokenStream for GramStream<'_> {
    fn advance(&mut self) -> bool {
        let chars = self.bounds.len().saturating_sub(1);
        match self.kind {
            Grams::Chars => loop {
                let at = self.at;
                if at >= chars {
                    return false;
                }
                self.at += 1;
                let (from, to) = (self.bounds[at], self.bounds[at + 1]);
                if let [b] = self.text.as_bytes()[from..to] {
                    let bit = 1u128 << b;
                    if self.seen_ascii & bit != 0 {
                        continue;
                    }
                    self.seen_ascii |= bit;
                }
                return self.emit(from, to, at);
            },
            Grams::Tri => {
                let at = self.at;
                if at + N <= chars {
                    self.at += 1;
                    self.emit(self.bounds[at], self.bounds[at + N], at)
                } else if at + N - 1 == chars {
                    // The last two characters, then END.
                    self.at += 1;
                    self.emit(self.bounds[at], self.text.len(), at);
                    self.token.text.push(END);
                    true
                } else {
                    false
                }
            }
            Grams::Words => {
                let rest = &self.text[self.at..];
                let Some(start) = rest.find(is_word_char) else { return false };
                let from = self.at + start;
                let to =
                    self.text[from..].find(|c: char| !is_word_char(c)).map_or(self.text.len(), |e| from + e);
                self.at = to;
                self.ordinal += 1;
                self.emit(from, to, self.ordinal - 1)
            }
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// How a normalised term is looked up.
#[derive(Debug, PartialEq, Eq)]
pub enum TermGrams {
    /// A 1-character term: the character itself.
    Char(String),
    /// A 2-character term: the prefix of the 3-grams (END ones included) that contain it.
    Prefix(String),
    /// Up to [`MAX_QUERY_GRAMS`] of the term's 3-grams with their offsets in the term,
    /// first and last included: a body contains the term only if it holds all of them at
    /// those relative positions (a phrase query), so candidates are nearly exact.
    Tri(Vec<(usize, String)>),
}

pub fn query_grams(term: &str) -> TermGrams {
    let chars: Vec<char> = term.chars().collect();
    match chars.len() {
        1 => return TermGrams::Char(term.to_owned()),
        2 => return TermGrams::Prefix(term.to_owned()),
        _ => {}
    }
    let last = chars.len() - N;
    let step = (last + 1).div_ceil(MAX_QUERY_GRAMS - 1).max(1);
    let mut offsets: Vec<usize> = (0..=last).step_by(step).collect();
    if offsets.last() != Some(&last) {
        offsets.push(last);
    }
    TermGrams::Tri(offsets.into_iter().map(|o| (o, chars[o..o + N].iter().collect())).collect())
}

/// The words of normalised text: maximal runs of word characters.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn tokens(kind: Grams, text: &str) -> Vec<(usize, String)> {
        let mut tokenizer = GramTokenizer(kind);
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push((stream.token().position, stream.token().text.clone()));
        }
        out
    }

    #[test]
    fn tokenizers_make_every_gram_at_its_position() {
        let chars: Vec<String> = tokens(Grams::Chars, "aé🎉").into_iter().map(|t| t.1).collect();
        assert_eq!(chars, ["a", "é", "🎉"]);
        // An ASCII character is emitted once; others every time (tantivy copes either way).
        let chars: Vec<String> =
            tokens(Grams::Chars, "abca é\u{7f}é\u{7f}").into_iter().map(|t| t.1).collect();
        assert_eq!(chars, ["a", "b", "c", " ", "é", "\u{7f}", "é"]);
        assert_eq!(
            tokens(Grams::Tri, "abcdé"),
            [(0, "abc".into()), (1, "bcd".into()), (2, "cdé".into()), (3, "dé\u{3}".into())]
        );
        assert_eq!(tokens(Grams::Tri, "ab"), [(0, "ab\u{3}".into())]);
        assert!(tokens(Grams::Tri, "a").is_empty() && tokens(Grams::Tri, "").is_empty());
        assert_eq!(
            tokens(Grams::Words, "go-kart, c++ 你好!"),
            [(0, "go".into()), (1, "kart".into()), (2, "c".into()), (3, "你好".into())]
        );
        assert!(tokens(Grams::Chars, "").is_empty() && tokens(Grams::Words, " - ").is_empty());
    }

    #[test]
    fn a_body_holds_every_gram_a_contained_term_is_looked_up_by_at_the_right_places() {
        let body = "stuff with rails and go — 你好世界 🎉";
        let chars: HashSet<String> = tokens(Grams::Chars, body).into_iter().map(|t| t.1).collect();
        let tri = tokens(Grams::Tri, body);
        for term in ["s", "go", " 🎉", "tuf", "rails and", "你好世界", "🎉", "with rails and go — 你好"]
        {
            let at = body[..body.find(term).unwrap()].chars().count();
            match query_grams(term) {
                TermGrams::Char(g) => assert!(chars.contains(&g), "{term}"),
                TermGrams::Prefix(p) => assert!(tri.iter().any(|(_, g)| g.starts_with(&p)), "{term}"),
                TermGrams::Tri(wanted) => {
                    for (offset, g) in wanted {
                        assert!(tri.contains(&(at + offset, g.clone())), "{term}: {g} at {}", at + offset);
                    }
                }
            }
        }
    }

    #[test]
    fn long_terms_use_a_bounded_number_of_grams_spanning_the_term() {
        let TermGrams::Tri(g) = query_grams(&"a".repeat(256)) else { panic!() };
        assert!(g.len() <= MAX_QUERY_GRAMS, "{}", g.len());
        assert_eq!((g.first().unwrap().0, g.last().unwrap().0), (0, 253));
        let TermGrams::Tri(g) = query_grams("abcd") else { panic!() };
        assert_eq!(g, [(0, "abc".to_owned()), (1, "bcd".to_owned())]);
        assert_eq!(query_grams("ab"), TermGrams::Prefix("ab".into()));
        assert_eq!(query_grams("a"), TermGrams::Char("a".into()));
    }

    #[test]
    fn words_are_runs_of_alphanumerics() {
        assert_eq!(words("go-kart, c++ 你好!").collect::<Vec<_>>(), ["go", "kart", "c", "你好"]);
    }
}
