//! Search in PostgreSQL (SPEC §5): candidates are the chat's messages whose normalised body
//! contains every term (`LIKE`, which pg_trgm's index serves for terms of three characters
//! or more; shorter terms are answered from the chat's own rows, never a scan of every
//! message), newest first; the core's matcher then ranks them exactly as the embedded mode
//! does: whole-word matches first, then matches inside words, each newest first.

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

/// The chat's matching messages below a number, newest first: the statement each chunk of
/// a search runs (`$1` the chat, `$2` the number, `$3` the patterns, `$4` the chunk size).
pub const SEARCH_CANDIDATES: &str = "SELECT number, body_norm FROM messages \
    WHERE chat_id = $1 AND number < $2 AND body_norm LIKE ALL ($3) ORDER BY number DESC LIMIT $4";

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
    // Numbers only: the bodies of the page are read once it is known.
    let (mut whole, mut inside): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    let mut below = i64::MAX;
    // Newest first, a chunk at a time, until the whole-word matches fill the page (every
    // match inside words would rank after them) or the chat's matches run out.
    while whole.len() < wanted {
        let rows = sqlx::query(SEARCH_CANDIDATES)
            .bind(chat)
            .bind(below)
            .bind(&patterns)
            .bind(CHUNK)
            .fetch_all(pool)
            .await
            .map_err(map)?;
        for row in &rows {
            let number: i64 = row.try_get("number").map_err(map)?;
            let normalized: &str = row.try_get("body_norm").map_err(map)?;
            match request.keyword.matches(normalized) {
                Some(MatchKind::WholeWords) => whole.push(number),
                // Only as many as the whole-word matches leave room for.
                Some(MatchKind::InsideWords) if whole.len() + inside.len() < wanted => inside.push(number),
                _ => {}
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == CHUNK => below = last.try_get("number").map_err(map)?,
            _ => break,
        }
    }
    whole.extend(inside);
    let page: Vec<i64> = whole.into_iter().take(wanted).skip(request.offset).collect();
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
