//! Search in PostgreSQL (SPEC §5), in the embedded mode's two passes and with its ranking:
//! whole-word matches first, then matches inside words, each newest first.
//!
//! 1. Whole words: the chat's messages whose words (`body_words`, split from the normalised
//!    body by PostgreSQL, under a GIN index with the chat) include every word of the
//!    keyword, newest first, verified by the core's matcher, until the page is full or they
//!    run out. A keyword with no word at all (punctuation, emoji) skips to the second pass.
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
/// of the second pass (`$1` the chat, `$2` the number, `$3` the patterns, `$4` the chunk).
pub const SEARCH_CANDIDATES: &str = "SELECT number, body_norm FROM messages \
    WHERE chat_id = $1 AND number < $2 AND body_norm LIKE ALL ($3) ORDER BY number DESC LIMIT $4";

/// The same, among the messages holding every word `$5`: each chunk of the first pass.
pub const WHOLE_WORD_CANDIDATES: &str = "SELECT number, body_norm FROM messages \
    WHERE chat_id = $1 AND number < $2 AND body_norm LIKE ALL ($3) AND body_words @> $5 \
    ORDER BY number DESC LIMIT $4";

/// The words of the terms, split as `body_words` is (the same expression, so that a term
/// found as a whole word has its words among the body's).
const KEYWORD_WORDS: &str = "SELECT coalesce(array_agg(DISTINCT w), '{}') FROM unnest($1::text[]) AS t, \
    unnest(array_remove(regexp_split_to_array(t, '[^[:alnum:]]+'), '')) AS w";

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
    let words: Vec<String> =
        sqlx::query_scalar(KEYWORD_WORDS).bind(request.keyword.terms()).fetch_one(pool).await.map_err(map)?;
    // Numbers only: the bodies of the page are read once it is known.
    let mut ranked: Vec<i64> = Vec::new();
    if !words.is_empty() {
        let whole_words =
            |n: i64, kind: Option<MatchKind>| (kind == Some(MatchKind::WholeWords)).then_some(n);
        scan(pool, chat, &patterns, Some(&words), request, wanted, &mut ranked, whole_words).await?;
    }
    if ranked.len() < wanted {
        let seen: std::collections::HashSet<i64> = ranked.iter().copied().collect();
        let rest = |n: i64, kind: Option<MatchKind>| (kind.is_some() && !seen.contains(&n)).then_some(n);
        let mut more = Vec::new();
        scan(pool, chat, &patterns, None, request, wanted - ranked.len(), &mut more, rest).await?;
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

/// One pass: the chat's candidates newest first, a chunk at a time, each kept when `keep`
/// says so (given its match by the core's matcher), until `wanted` are kept or none are left.
#[allow(clippy::too_many_arguments)]
async fn scan(
    pool: &PgPool,
    chat: i64,
    patterns: &[String],
    words: Option<&[String]>,
    request: &SearchRequest,
    wanted: usize,
    kept: &mut Vec<i64>,
    keep: impl Fn(i64, Option<MatchKind>) -> Option<i64>,
) -> StoreResult<()> {
    let mut below = i64::MAX;
    while kept.len() < wanted {
        let query = match words {
            Some(words) => sqlx::query(WHOLE_WORD_CANDIDATES)
                .bind(chat)
                .bind(below)
                .bind(patterns)
                .bind(CHUNK)
                .bind(words),
            None => sqlx::query(SEARCH_CANDIDATES).bind(chat).bind(below).bind(patterns).bind(CHUNK),
        };
        let rows = query.fetch_all(pool).await.map_err(map)?;
        for row in &rows {
            let number: i64 = row.try_get("number").map_err(map)?;
            let normalized: &str = row.try_get("body_norm").map_err(map)?;
            if kept.len() < wanted {
                kept.extend(keep(number, request.keyword.matches(normalized)));
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == CHUNK => below = last.try_get("number").map_err(map)?,
            _ => break,
        }
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
