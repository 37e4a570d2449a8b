//! Live events of a chat (SPEC §8): what a backend publishes once a batch has committed, and
//! the subscription the
//! [`Feed`](crate::ports::Feed) port hands a stream.
//!
//! A backend owns one [`Hub`]. After a commit it [`publish`](Hub::publish)es each chat's
//! new and edited messages in commit order, which in every mode is number order within a
//! chat (one writer embedded; the chat's row lock in PostgreSQL). The hub keeps one
//! broadcast channel per chat that somebody follows, and none for the others, so a chat
//! nobody follows costs one map lookup per commit. A channel holds a bounded number of
//! events for all its subscribers together: memory does not grow with subscribers, nor
//! with a subscriber that stops reading; one that falls that far behind is told so
//! ([`Ended::Lagged`]) and resumes from storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::broadcast;

use crate::Message;
use crate::search::ChatKey;

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new message.
    Message,
    /// A new body for an existing message.
    Edit,
}

/// One event of a chat: the message as it was committed.
#[derive(Debug)]
pub struct ChatEvent {
    pub kind: EventKind,
    pub message: Message,
    /// The event as the transport writes it, made once for every subscriber.
    rendered: OnceLock<Box<str>>,
}

impl ChatEvent {
    pub fn new(kind: EventKind, message: Message) -> Self {
        ChatEvent { kind, message, rendered: OnceLock::new() }
    }

    /// The event rendered by `render`, which runs once however many subscribers ask.
    pub fn rendered(&self, render: impl FnOnce(&Message) -> String) -> &str {
        self.rendered.get_or_init(|| render(&self.message).into_boxed_str())
    }
}

/// Events a followed chat keeps for its slowest subscriber, unless a backend says otherwise.
pub const STREAM_CAPACITY: usize = 1024;

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The subscriber fell more than the hub's capacity behind; events were dropped for it.
    Lagged,
    /// The hub closed it: the backend is shutting down or lost track of events (PostgreSQL's
    /// notifications were interrupted). Storage still has everything.
    Closed,
}

/// The chats somebody follows, each with its broadcast channel.
#[derive(Debug)]
pub struct Hub {
    chats: Mutex<HashMap<ChatKey, broadcast::Sender<Arc<ChatEvent>>>>,
    /// Events a channel holds before the slowest subscriber is dropped.
    capacity: usize,
}

impl Hub {
    /// A hub whose channels hold `capacity` events each.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Hub { chats: Mutex::default(), capacity: capacity.max(1) })
    }

    fn chats(&self) -> std::sync::MutexGuard<'_, HashMap<ChatKey, broadcast::Sender<Arc<ChatEvent>>>> {
        self.chats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `chat` from now on: every event published after this call is received.
    pub fn subscribe(self: &Arc<Self>, chat: ChatKey) -> Subscription {
        let receiver =
            self.chats().entry(chat).or_insert_with(|| broadcast::channel(self.capacity).0).subscribe();
        Subscription { receiver: Some(receiver), hub: self.clone(), chat }
    }

    /// Whether anybody follows `chat` (publishers skip building events nobody receives).
    pub fn watches(&self, chat: ChatKey) -> bool {
        self.chats().contains_key(&chat)
    }

    /// Hands `events` (one commit's, in number order) to the chat's subscribers, if any.
    pub fn publish(&self, chat: ChatKey, events: Vec<ChatEvent>) {
        if events.is_empty() {
            return;
        }
        if let Some(sender) = self.chats().get(&chat) {
            for event in events {
                // No receiver left: the last one is about to remove the channel.
                let _ = sender.send(Arc::new(event));
            }
        }
    }

    /// Subscribers at the moment, over every chat.
    pub fn subscribers(&self) -> usize {
        self.chats().values().map(broadcast::Sender::receiver_count).sum()
    }

    /// Ends every subscription (after the events already sent): the backend is shutting
    /// down, or may have missed events.
    pub fn close_all(&self) {
        self.chats().clear();
    }

    fn release(&self, chat: ChatKey) {
        let mut chats = self.chats();
        if chats.get(&chat).is_some_and(|s| s.receiver_count() == 0) {
            chats.remove(&chat);
        }
    }
}

/// One subscriber's place in a chat's events. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    /// `None` only while dropping.
    receiver: Option<broadcast::Receiver<Arc<ChatEvent>>>,
    hub: Arc<Hub>,
    chat: ChatKey,
}

impl Subscription {
    /// The next event, waiting for one; or why there will be none.
    pub async fn recv(&mut self) -> Result<Arc<ChatEvent>, Ended> {
        let receiver = self.receiver.as_mut().ok_or(Ended::Closed)?;
        receiver.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(_) => Ended::Lagged,
            broadcast::error::RecvError::Closed => Ended::Closed,
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.hub.release(self.chat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageNumber, Timestamp};

    fn event(number: i64) -> ChatEvent {
        let message = Message {
            number: MessageNumber::try_from(number).unwrap(),
            body: format!("m{number}"),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        };
        ChatEvent::new(EventKind::Message, message)
    }

    async fn next(sub: &mut Subscription) -> i64 {
        sub.recv().await.unwrap().message.number.get()
    }

    #[tokio::test]
    async fn subscribers_receive_their_chats_batches_in_order_and_nothing_of_other_chats() {
        let hub = Hub::new(8);
        let (a, b) = (ChatKey(1), ChatKey(2));
        let mut first = hub.subscribe(a);
        let mut second = hub.subscribe(a);
        hub.publish(b, vec![event(1)]);
        hub.publish(a, vec![event(1), event(2)]);
        hub.publish(a, vec![event(3)]);
        for sub in [&mut first, &mut second] {
            assert_eq!([next(sub).await, next(sub).await, next(sub).await], [1, 2, 3]);
        }
        assert!(!hub.watches(b), "publishing to a chat nobody follows keeps nothing");
        assert_eq!(hub.subscribers(), 2);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_the_capacity_is_told_it_lagged() {
        let hub = Hub::new(2);
        let chat = ChatKey(7);
        let mut slow = hub.subscribe(chat);
        for n in 1..=3 {
            hub.publish(chat, vec![event(n)]);
        }
        assert_eq!(slow.recv().await.unwrap_err(), Ended::Lagged);
    }

    #[tokio::test]
    async fn the_last_subscriber_to_leave_removes_the_chats_channel() {
        let hub = Hub::new(2);
        let chat = ChatKey(3);
        let one = hub.subscribe(chat);
        let two = hub.subscribe(chat);
        drop(one);
        assert!(hub.watches(chat));
        drop(two);
        assert!(!hub.watches(chat));
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test]
    async fn closing_the_hub_ends_subscriptions_after_what_was_sent() {
        let hub = Hub::new(4);
        let chat = ChatKey(5);
        let mut sub = hub.subscribe(chat);
        hub.publish(chat, vec![event(1)]);
        hub.close_all();
        assert_eq!(next(&mut sub).await, 1);
        assert_eq!(sub.recv().await.unwrap_err(), Ended::Closed);
        drop(sub);
        assert!(!hub.watches(chat));
    }

    #[test]
    fn an_event_is_rendered_once() {
        let e = event(4);
        let mut calls = 0;
        assert_eq!(
            e.rendered(|m| {
                calls += 1;
                m.body.clone()
            }),
            "m4"
        );
        assert_eq!(e.rendered(|_| unreachable!("rendered already")), "m4");
        assert_eq!(calls, 1);
    }
}
