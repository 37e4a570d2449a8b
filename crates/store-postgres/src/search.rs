//! Search in PostgreSQL (SPEC §5), in the embedded mode's two passes and with its ranking:
//! whole-word matches first, then matches inside words, each newest first.
//!
//! 1. Whole words: the chat's messages whose words (`body_words`, split from the normalised
//!    body by PostgreSQL, under a GIN index with the chat) include every word of the
//!    keyword, newest first (among the chat's newest messages, then through the index),
//!    verified by the core's matcher, until the page is full or they run out. A keyword
//!    with no word at all (punctuation, emoji) skips to the second pass.
//! 2. The rest: the chat's messages whose normalised body contains every term (`LIKE`,
//!    served by pg_trgm for terms of three characters or more, by the chat's own rows for
//!    shorter ones, never by reading every message), newest first, until the page is full.
//!
//! A term found inside words in most of a chat but rarely as a word thus costs the words it
//! has and one page of the second pass, not every row that contains it.

use chatd_core::error::StoreResult;
use chatd_core::search::{MatchKind, SearchRequest};
use chatd_core::{AppToken, ChatNumber, Message};
use sqlx::{PgPool, Row};

use crate::error::map;
use crate::reads::{chat_id, message_from};

/// Candidates read per query.
const CHUNK: i64 = 256;

/// A term as a `LIKE` pattern matching it anywhere, its metacharacters escaped (`\` is
/// PostgreSQL's default escape character).
fn contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The chat's messages below a number containing every pattern, newest first: each chunk
/// of the second pass (`$1` the chat, `$2` the number, `$3` the patterns, `$4` the chunk,
/// `$5` the longest pattern). `LIKE ALL` of an array is not something a GIN index can
/// serve, so the longest term is also given alone, where pg_trgm can.
pub const SEARCH_CANDIDATES: &str = "SELECT number, body_norm FROM messages \
    WHERE chat_id = $1 AND number < $2 AND body_norm LIKE $5 AND body_norm LIKE ALL ($3) \
    ORDER BY number DESC LIMIT $4";

/// The chat's messages below a number holding every word `$5` and containing every
/// pattern `$3`, newest first: each chunk of the first pass. A term that is one word
/// needs no pattern here (holding the word, a body contains it): the patterns given are
/// those of the other terms, so that PostgreSQL does not count a term's rows twice, as if
/// its word and its pattern were independent, and misjudge how many rows match.
///
/// The chat comes through a sub-select, unknown when the statement is planned. Knowing a
/// big chat, PostgreSQL would judge its entries in the word index too many to read, and
/// rather intersect the word's rows in every chat with the chat's rows in the primary
/// key; within the index, though, the word's few entries lead and the chat's are skipped.
pub const WHOLE_WORD_CANDIDATES: &str = "SELECT number, body_norm FROM messages \
    WHERE chat_id = (SELECT $1::bigint) AND number < $2 AND body_norm LIKE ALL ($3) \
    AND body_words @> $5 ORDER BY number DESC LIMIT $4";

/// The matches of the first pass among the chat's newest `$2` messages, newest first (`$1`
/// the chat, `$3` the patterns, `$4` the words): its first look, before the word index.
/// A word in many of a chat's messages fills a page from its newest ones, where the index
/// would give all of its messages in the chat to be read and sorted.
pub const NEWEST_WHOLE_WORD_CANDIDATES: &str = "SELECT number, body_norm FROM \
    (SELECT number, body_norm, body_words FROM messages WHERE chat_id = $1 ORDER BY number DESC LIMIT $2) \
    AS newest WHERE body_norm LIKE ALL ($3) AND body_words @> $4 ORDER BY number DESC";

/// Messages [`NEWEST_WHOLE_WORD_CANDIDATES`] reads.
const NEWEST: i64 = 4 * CHUNK;

/// The words of the terms `$1`, split as `body_words` is (the same expression, so that a
/// term found as a whole word has its words among the body's), and the patterns `$2` of
/// the terms that are not one word.
const KEYWORD_WORDS: &str = "SELECT \
    (SELECT coalesce(array_agg(DISTINCT w), '{}') FROM unnest($1::text[]) AS t, \
        unnest(array_remove(regexp_split_to_array(t, '[^[:alnum:]]+'), '')) AS w), \
    (SELECT coalesce(array_agg(p), '{}') FROM unnest($1::text[], $2::text[]) AS u(t, p) \
        WHERE t !~ '^[[:alnum:]]+$')";

pub(crate) async fn search(
    pool: &PgPool,
    token: &AppToken,
    chat: ChatNumber,
    request: &SearchRequest,
) -> StoreResult<Vec<Message>> {
    let chat = chat_id(pool, token, chat).await?;
    // No body holds a NUL (`MessageBody` refuses it), and PostgreSQL's text cannot carry one.
    if request.keyword.terms().iter().any(|t| t.contains('\0')) {
        return Ok(Vec::new());
    }
    let patterns: Vec<String> = request.keyword.terms().iter().map(|t| contains_pattern(t)).collect();
    let wanted = request.offset + request.limit;
    let (words, not_words): (Vec<String>, Vec<String>) = sqlx::query_as(KEYWORD_WORDS)
        .bind(request.keyword.terms())
        .bind(&patterns)
        .fetch_one(pool)
        .await
        .map_err(map)?;
    // Numbers only: the bodies of the page are read once it is known.
    let mut ranked: Vec<i64> = Vec::new();
    if !words.is_empty() {
        let whole_words =
            |n: i64, kind: Option<MatchKind>| (kind == Some(MatchKind::WholeWords)).then_some(n);
        let pass = Pass::WholeWords { words: &words, patterns: &not_words };
        scan(pool, chat, pass, request, wanted, &mut ranked, whole_words).await?;
    }
    if ranked.len() < wanted {
        let seen: std::collections::HashSet<i64> = ranked.iter().copied().collect();
        let rest = |n: i64, kind: Option<MatchKind>| (kind.is_some() && !seen.contains(&n)).then_some(n);
        let mut more = Vec::new();
        scan(
            pool,
            chat,
            Pass::Substrings { patterns: &patterns },
            request,
            wanted - ranked.len(),
            &mut more,
            rest,
        )
        .await?;
        ranked.extend(more);
    }
    let page: Vec<i64> = ranked.into_iter().take(wanted).skip(request.offset).collect();
    let rows = sqlx::query(
        "SELECT number, body, created_at, updated_at FROM messages WHERE chat_id = $1 AND number = ANY ($2)",
    )
    .bind(chat)
    .bind(&page)
    .fetch_all(pool)
    .await
    .map_err(map)?;
    let mut by_number: std::collections::HashMap<i64, Message> =
        rows.iter().map(|row| message_from(row).map(|m| (m.number.get(), m))).collect::<StoreResult<_>>()?;
    // In rank order; a message is never deleted, so every one is still there.
    Ok(page.iter().filter_map(|n| by_number.remove(n)).collect())
}

/// What one pass asks PostgreSQL for.
#[derive(Clone, Copy)]
enum Pass<'a> {
    /// [`WHOLE_WORD_CANDIDATES`]: bodies holding every word, containing every pattern.
    WholeWords { words: &'a [String], patterns: &'a [String] },
    /// [`SEARCH_CANDIDATES`]: bodies containing every pattern (at least one).
    Substrings { patterns: &'a [String] },
}

/// One pass: the chat's candidates newest first, a chunk at a time, each kept when `keep`
/// says so (given its match by the core's matcher), until `wanted` are kept or none are left.
///
/// Each chunk is planned for its own values (an unnamed statement): whether reading the
/// chat's rows newest first or an index is cheaper depends on how common the keyword is,
/// and a cached generic plan, blind to it, would read the whole chat for a common one.
async fn scan(
    pool: &PgPool,
    chat: i64,
    pass: Pass<'_>,
    request: &SearchRequest,
    wanted: usize,
    kept: &mut Vec<i64>,
    keep: impl Fn(i64, Option<MatchKind>) -> Option<i64>,
) -> StoreResult<()> {
    let mut below = i64::MAX;
    // The first pass looks at the chat's newest messages first.
    let mut newest = matches!(pass, Pass::WholeWords { .. });
    while kept.len() < wanted {
        let query = match pass {
            Pass::WholeWords { words, patterns } if newest => {
                sqlx::query(NEWEST_WHOLE_WORD_CANDIDATES).bind(chat).bind(NEWEST).bind(patterns).bind(words)
            }
            Pass::WholeWords { words, patterns } => sqlx::query(WHOLE_WORD_CANDIDATES)
                .bind(chat)
                .bind(below)
                .bind(patterns)
                .bind(CHUNK)
                .bind(words),
            Pass::Substrings { patterns } => {
                // The term with the most word characters has the most trigrams: the
                // fewest candidates.
                let trigrams = |p: &&String| p.chars().filter(|c| c.is_alphanumeric()).count();
                let longest = patterns.iter().max_by_key(trigrams).map_or("%", String::as_str);
                sqlx::query(SEARCH_CANDIDATES).bind(chat).bind(below).bind(patterns).bind(CHUNK).bind(longest)
            }
        };
        let rows = query.persistent(false).fetch_all(pool).await.map_err(map)?;
        for row in &rows {
            let number: i64 = row.try_get("number").map_err(map)?;
            let normalized: &str = row.try_get("body_norm").map_err(map)?;
            if kept.len() < wanted {
                kept.extend(keep(number, request.keyword.matches(normalized)));
            }
        }
        match rows.last() {
            // Every match among the newest messages was read: the index gives those below
            // the last one (or all, when there was none; the newest hold no more).
            Some(last) if newest => below = last.try_get("number").map_err(map)?,
            None if newest => {}
            Some(last) if rows.len() as i64 == CHUNK => below = last.try_get("number").map_err(map)?,
            _ => break,
        }
        newest = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_metacharacters_match_only_themselves() {
        assert_eq!(contains_pattern("50%"), "%50\\%%");
        assert_eq!(contains_pattern("a_b"), "%a\\_b%");
        assert_eq!(contains_pattern("c:\\x"), "%c:\\\\x%");
        assert_eq!(contains_pattern("plain"), "%plain%");
    }
}
