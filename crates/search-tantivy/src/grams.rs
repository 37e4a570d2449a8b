//! What is indexed and what is looked up, from normalised text.

use std::collections::HashSet;

use chatd_core::search::is_word_char;

/// Longest gram indexed. Terms longer than this are looked up by their grams of this length.
const N: usize = 3;
/// Most grams one term is looked up by; more would cost time and add no exactness (the
/// core verifies every candidate).
const MAX_QUERY_GRAMS: usize = 12;

/// What a normalised body is indexed by.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyGrams {
    /// Every distinct 1- and 2-character substring.
    pub short: Vec<String>,
    /// Every 3-character substring with the character position where it starts.
    pub tri: Vec<(usize, String)>,
}

pub fn body_grams(body: &str) -> BodyGrams {
    let chars: Vec<char> = body.chars().collect();
    let mut short: HashSet<String> = HashSet::new();
    let mut tri = Vec::with_capacity(chars.len().saturating_sub(N - 1));
    for i in 0..chars.len() {
        for n in 1..N.min(chars.len() - i + 1) {
            short.insert(chars[i..i + n].iter().collect());
        }
        if i + N <= chars.len() {
            tri.push((i, chars[i..i + N].iter().collect()));
        }
    }
    BodyGrams { short: short.into_iter().collect(), tri }
}

/// How a normalised term is looked up.
#[derive(Debug, PartialEq, Eq)]
pub enum TermGrams {
    /// A 1- or 2-character term: the term itself, among the short grams.
    Short(String),
    /// Up to [`MAX_QUERY_GRAMS`] of the term's 3-grams with their offsets in the term,
    /// first and last included: a body contains the term only if it holds all of them at
    /// those relative positions (a phrase query), so candidates are nearly exact.
    Tri(Vec<(usize, String)>),
}

pub fn query_grams(term: &str) -> TermGrams {
    let chars: Vec<char> = term.chars().collect();
    if chars.len() < N {
        return TermGrams::Short(term.to_owned());
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
    use super::*;

    #[test]
    fn a_body_holds_every_gram_a_contained_term_is_looked_up_by_at_the_right_places() {
        let body = "stuff with rails and go — 你好世界 🎉";
        let grams = body_grams(body);
        let short: HashSet<&str> = grams.short.iter().map(String::as_str).collect();
        for term in ["s", "go", "tuf", "rails and", "你好世界", "🎉", "with rails and go — 你好"] {
            let at = body[..body.find(term).unwrap()].chars().count();
            match query_grams(term) {
                TermGrams::Short(g) => assert!(short.contains(g.as_str()), "{term}"),
                TermGrams::Tri(wanted) => {
                    for (offset, g) in wanted {
                        assert!(
                            grams.tri.contains(&(at + offset, g.clone())),
                            "{term}: {g} at {}",
                            at + offset
                        );
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
        assert_eq!(query_grams("ab"), TermGrams::Short("ab".into()));
    }

    #[test]
    fn words_are_runs_of_alphanumerics() {
        assert_eq!(words("go-kart, c++ 你好!").collect::<Vec<_>>(), ["go", "kart", "c", "你好"]);
    }
}
