//! Live events across instances (SPEC §8). Every write batch that creates or edits messages
//! sends, in its own transaction, one `NOTIFY` per chat: "chat c has new messages a..=b" or
//! "message n of chat c was edited". PostgreSQL delivers a transaction's notifications only
//! if it commits, to every listening session, in commit order. Each instance listens on one
//! connection; for a chat somebody follows on this instance, it reads the named rows and
//! hands them to its [`Hub`], so a subscriber here receives what any instance wrote.
//!
//! Notifications sent while the listening connection is down are lost, so when it drops
//! every stream of the instance ends (its clients resume from storage with `Last-Event-ID`),
//! and no stream starts until the instance listens again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chatd_core::error::StoreResult;
use chatd_core::feed::{ChatEvent, EventKind, Hub};
use chatd_core::search::ChatKey;
use chatd_core::{Message, StoreError};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};

use crate::error::map;
use crate::reads::message_from;

/// The notification channel chatd's instances share.
pub(crate) const CHANNEL: &str = "chatd_events";

/// How long to wait before listening again after the connection failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The payload for new messages `first..=last` of chat `chat` (its id).
pub(crate) fn new_messages(chat: i64, first: i64, last: i64) -> String {
    format!("m {chat} {first} {last}")
}

/// The payload for an edit of message `number` of chat `chat` (its id).
pub(crate) fn edited(chat: i64, number: i64) -> String {
    format!("e {chat} {number} {number}")
}

/// A parsed payload: what happened, in which chat, to which numbers.
fn parse(payload: &str) -> Option<(EventKind, i64, i64, i64)> {
    let mut parts = payload.split(' ');
    let kind = match parts.next()? {
        "m" => EventKind::Message,
        "e" => EventKind::Edit,
        _ => return None,
    };
    let mut next = || parts.next()?.parse::<i64>().ok();
    let (chat, first, last) = (next()?, next()?, next()?);
    Some((kind, chat, first, last))
}

/// The instance's listener: whether it is listening, and the hub it feeds.
#[derive(Debug)]
pub(crate) struct Listener {
    pub hub: Arc<Hub>,
    listening: AtomicBool,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Listener {
    /// Listens on `pool`'s database before returning, then follows it in a task.
    pub async fn start(pool: PgPool, hub: Arc<Hub>) -> StoreResult<Arc<Self>> {
        let first = listen(&pool).await?;
        let listener = Arc::new(Listener { hub, listening: AtomicBool::new(true), task: Default::default() });
        let task = tokio::spawn(run(pool, first, listener.clone()));
        *listener.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
        Ok(listener)
    }

    /// Ready for a new stream: a stream that started while notifications could be missed
    /// would miss them silently.
    pub fn check(&self) -> StoreResult<()> {
        if self.listening.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("not listening for live events; retry shortly".into()))
        }
    }

    /// Stops listening and ends every stream.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            task.abort();
        }
        self.listening.store(false, Ordering::Release);
        self.hub.close_all();
    }
}

async fn listen(pool: &PgPool) -> StoreResult<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.map_err(map)?;
    // A lost connection is reported at once (and ends the streams): `run` listens again
    // itself, rather than sqlx reconnecting inside `try_recv` while streams wait unaware.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await.map_err(map)?;
    Ok(listener)
}

async fn run(pool: PgPool, mut listener: PgListener, state: Arc<Listener>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if let Err(e) = deliver(&pool, &state.hub, &notification).await {
                    // The rows are committed but could not be read: the streams of this
                    // instance cannot say what they missed, so they end and resume.
                    tracing::warn!(error = %e, "reading a chat's new rows for its streams failed; ending streams");
                    state.hub.close_all();
                }
            }
            Ok(None) | Err(_) => {
                state.listening.store(false, Ordering::Release);
                state.hub.close_all();
                tracing::warn!("lost the connection that listens for live events; ending streams");
                listener = loop {
                    if pool.is_closed() {
                        return;
                    }
                    match listen(&pool).await {
                        Ok(listener) => break listener,
                        Err(_) => tokio::time::sleep(RECONNECT_DELAY).await,
                    }
                };
                state.listening.store(true, Ordering::Release);
                tracing::info!("listening for live events again");
            }
        }
    }
}

/// Reads the rows a notification names, if anybody here follows their chat, and publishes
/// them.
async fn deliver(pool: &PgPool, hub: &Hub, notification: &PgNotification) -> StoreResult<()> {
    let Some((kind, chat, first, last)) = parse(notification.payload()) else {
        tracing::warn!(payload = notification.payload(), "ignoring a notification chatd did not send");
        return Ok(());
    };
    if !hub.watches(ChatKey(chat)) {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT number, body, created_at, updated_at FROM messages \
         WHERE chat_id = $1 AND number BETWEEN $2 AND $3 ORDER BY number",
    )
    .bind(chat)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await
    .map_err(map)?;
    let messages: Vec<Message> = rows.iter().map(message_from).collect::<StoreResult<_>>()?;
    hub.publish(ChatKey(chat), messages.into_iter().map(|m| ChatEvent::new(kind, m)).collect());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_back() {
        assert_eq!(parse(&new_messages(7, 3, 9)), Some((EventKind::Message, 7, 3, 9)));
        assert_eq!(parse(&edited(7, 4)), Some((EventKind::Edit, 7, 4, 4)));
        assert_eq!(parse("x 1 2 3"), None);
        assert_eq!(parse("m 1 2"), None);
    }
}
