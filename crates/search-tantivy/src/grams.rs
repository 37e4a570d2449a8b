//! What is indexed and what is looked up, from normalised text.

use std::collections::HashSet;

use chatd_core::search::is_word_char;

/// Longest gram indexed. Terms longer than this are looked up by their grams of this length.
const N: usize = 3;
/// Most grams one term is looked up by; more would cost time and add no exactness (the
/// core verifies every candidate).
const MAX_QUERY_GRAMS: usize = 12;

/// Every distinct 1-, 2- and 3-character substring of a normalised body.
pub fn body_grams(body: &str) -> Vec<String> {
    let chars: Vec<char> = body.chars().collect();
    let mut out: HashSet<String> = HashSet::new();
    for i in 0..chars.len() {
        for n in 1..=N.min(chars.len() - i) {
            out.insert(chars[i..i + n].iter().collect());
        }
    }
    out.into_iter().collect()
}

/// The grams a normalised term is looked up by: the term itself when it is short, else up to
/// [`MAX_QUERY_GRAMS`] of its 3-grams spread over its length. Every body containing the
/// term contains all of them.
pub fn query_grams(term: &str) -> Vec<String> {
    let chars: Vec<char> = term.chars().collect();
    if chars.len() <= N {
        return vec![term.to_owned()];
    }
    let windows: Vec<String> = chars.windows(N).map(|w| w.iter().collect()).collect();
    let step = windows.len().div_ceil(MAX_QUERY_GRAMS);
    let mut picked: Vec<String> = windows.iter().step_by(step).cloned().collect();
    if let Some(last) = windows.last() {
        picked.push(last.clone());
    }
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The words of normalised text: maximal runs of word characters.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_holds_every_gram_a_contained_term_is_looked_up_by() {
        let body = "stuff with rails and go — 你好世界 🎉";
        let grams: HashSet<String> = body_grams(body).into_iter().collect();
        for term in ["s", "go", "tuf", "rails and", "你好世界", "🎉", "with rails and go — 你好"] {
            assert!(body.contains(term));
            for g in query_grams(term) {
                assert!(grams.contains(&g), "{term}: {g}");
            }
        }
        assert!(query_grams(&"a".repeat(256)).len() == 1);
        assert!(query_grams(&"abcdefghij".repeat(20)).len() <= MAX_QUERY_GRAMS + 1);
    }

    #[test]
    fn words_are_runs_of_alphanumerics() {
        assert_eq!(words("go-kart, c++ 你好!").collect::<Vec<_>>(), ["go", "kart", "c", "你好"]);
    }
}
