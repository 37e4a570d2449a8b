//! `GET /applications/{token}/chats/{chat}/messages/stream`: a chat's messages as they are
//! created and edited, as server-sent events (SPEC §8).
//!
//! A stream subscribes to the chat's live events first, then reads what the client missed
//! (every message above `Last-Event-ID` or `?after`) from the catalog, then follows the
//! subscription. Because it subscribed before reading, a message committed while the
//! backlog is read arrives both ways; the stream remembers the last number it sent and
//! skips what it already has, and should a live event ever skip numbers it reads the gap
//! from the catalog first. Within a chat, numbers are committed in order, so "everything
//! up to the last number sent" is exactly what the client has.
//!
//! A stream ends with an `end` event when its client falls too far behind, when the backend
//! can no longer vouch for its events, or when chatd shuts down; the client reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does so by itself) and loses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chatd_core::feed::{ChatEvent, Ended, EventKind, Subscription};
use chatd_core::{AppToken, Catalog, ChatNumber, Limit, Message, NumberBound, Order, Page};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::{ApiResult, AppState};
use crate::error::ApiError;
use crate::extract::{ChatPath, StreamFrom};
use crate::metrics::OpenStream;
use crate::openapi::{BadRequest, NoChat};
use crate::views::MessageView;

/// Longest silence on a stream: a comment line keeps proxies from closing it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client waits before reconnecting after an `end` event.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Follow a chat's messages live (server-sent events).
#[utoipa::path(
    get, path = "/applications/{token}/chats/{chat}/messages/stream", tag = "messages",
    params(
        ChatPath,
        ("after" = Option<i64>, Query, minimum = 0, description = "Send every message numbered above this first, then the live ones."),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "What a reconnecting client received last; wins over `after`."),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", description = "Events `message` (`id`: its number) and `edit` (no `id`), each with the message as `data`; comments at least every 15 s; a last `end` event (`id`: the position to resume from) before chatd closes the stream (the client reconnects with `Last-Event-ID`)."),
        (status = 400, response = BadRequest),
        (status = 404, response = NoChat),
    )
)]
pub(super) async fn stream_messages(
    State(s): State<AppState>,
    path: ChatPath,
    StreamFrom(after): StreamFrom,
) -> ApiResult<Response> {
    let permit = s.streams.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded)?;
    let subscription = s.feed.subscribe(path.token.clone(), path.chat).await?;
    // Read once subscribed: with no position, what the chat holds now is not owed (in the
    // scale-out mode an event committed just before may still be on its way to this
    // instance); a position beyond it (a client of a chat restored from a backup) would
    // skip the messages that will take those numbers, so the stream starts at the newest.
    let newest = s.catalog.chat(path.token.clone(), path.chat).await?.last_number;
    let last = after.map_or(newest, |after| after.min(newest));
    let follow = Follow {
        catalog: s.catalog.clone(),
        token: path.token,
        chat: path.chat,
        subscription,
        last,
        catching_up: last < newest,
        queue: VecDeque::new(),
        stopping: s.stopping.clone(),
        ended: false,
        _slot: (permit, s.metrics.stream_opened()),
    };
    let events = futures::stream::unfold(follow, |mut f| async move {
        f.next().await.map(|event| (Ok::<_, Infallible>(event), f))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// One stream's state.
struct Follow {
    catalog: Arc<dyn Catalog>,
    token: AppToken,
    chat: ChatNumber,
    subscription: Subscription,
    /// The last message number sent, or the client had.
    last: i64,
    /// Still reading the backlog from the catalog.
    catching_up: bool,
    /// Events ready to send.
    queue: VecDeque<Event>,
    stopping: watch::Receiver<bool>,
    /// The `end` event is queued; nothing follows it.
    ended: bool,
    /// One of the open-stream slots, and the open-streams gauge, while the stream lives.
    _slot: (OwnedSemaphorePermit, OpenStream),
}

/// Why a stream ended, as its `end` event says.
#[derive(Serialize)]
struct EndData {
    reason: &'static str,
    /// The last message number sent: reconnect with it as `Last-Event-ID`.
    last_event_id: i64,
}

impl Follow {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if *self.stopping.borrow() {
                self.end("shutdown");
                continue;
            }
            if self.catching_up {
                if let Err(e) = self.read_backlog(None).await {
                    self.fail(&e);
                }
                continue;
            }
            let received = tokio::select! {
                received = self.subscription.recv() => Some(received),
                _ = self.stopping.wait_for(|stop| *stop) => None,
            };
            match received {
                Some(Ok(event)) => {
                    if let Err(e) = self.accept(&event).await {
                        self.fail(&e);
                    }
                }
                Some(Err(Ended::Lagged)) => self.end("lagged"),
                Some(Err(Ended::Closed)) => self.end("closed"),
                None => self.end("shutdown"),
            }
        }
    }

    /// Queues a live event, reading first from the catalog what it would skip.
    async fn accept(&mut self, event: &ChatEvent) -> Result<(), ApiError> {
        let number = event.message.number.get();
        let last = self.last;
        match event.kind {
            EventKind::Message if number <= last => {}
            EventKind::Message => {
                if number > last + 1 {
                    self.read_backlog(Some(number)).await?;
                }
                self.send(EventKind::Message, number, event.rendered(render));
            }
            EventKind::Edit if number <= last => self.send(EventKind::Edit, number, event.rendered(render)),
            // An edit of a message not sent yet: the catalog has it, edited.
            EventKind::Edit => self.read_backlog(Some(number + 1)).await?,
        }
        Ok(())
    }

    /// Queues the messages above the last one sent: those below `before` (a gap before a
    /// live event), or else one page towards the newest (catching up, which is over when a
    /// page comes back short).
    async fn read_backlog(&mut self, before: Option<i64>) -> Result<(), ApiError> {
        loop {
            let page = Page {
                limit: Limit::DEFAULT,
                order: Order::Asc,
                after: Some(bound(self.last)?),
                before: before.map(bound).transpose()?,
            };
            let listed = self.catalog.messages(self.token.clone(), self.chat, page).await?;
            for message in &listed.items {
                self.send(EventKind::Message, message.number.get(), &render(message));
            }
            match (listed.more, before) {
                (false, None) => self.catching_up = false,
                // A gap longer than a page: read on before accepting anything else.
                (true, Some(_)) => continue,
                _ => {}
            }
            return Ok(());
        }
    }

    fn send(&mut self, kind: EventKind, number: i64, data: &str) {
        // Only a message moves the stream's position: an edit carries no `id`, so that a
        // client (`EventSource` keeps the last `id` it saw) resumes after the newest message,
        // not after an older one that was edited; its data names the message.
        let event = match kind {
            EventKind::Message => {
                self.last = self.last.max(number);
                Event::default().id(number.to_string()).event("message")
            }
            EventKind::Edit => Event::default().event("edit"),
        };
        self.queue.push_back(event.data(data));
    }

    fn end(&mut self, reason: &'static str) {
        let data = EndData { reason, last_event_id: self.last };
        let data = serde_json::to_string(&data).unwrap_or_default();
        // With the position as its `id`, so that a client that has had no message yet
        // resumes from here too, not from whatever is new when it reconnects.
        let event = Event::default().id(self.last.to_string()).event("end").retry(RECONNECT_AFTER);
        self.queue.push_back(event.data(data));
        self.ended = true;
    }

    /// Ends the stream after storage failed a read.
    fn fail(&mut self, e: &ApiError) {
        tracing::warn!(error = %e, "a stream could not read its chat; ending it");
        self.end("unavailable");
    }
}

fn bound(n: i64) -> Result<NumberBound, ApiError> {
    NumberBound::new(n).ok_or_else(|| ApiError::Internal("a stream's position is negative".into()))
}

/// An event's data: the message, as every route shows it.
fn render(message: &Message) -> String {
    serde_json::to_string(&MessageView::from(message)).unwrap_or_default()
}
