//! Subscribers of a chat's live stream, as the stream figures drive them: many server-sent
//! event streams held by this process, each a plain TCP connection that sends one request by
//! hand and scans the bytes it receives for `id:` and `event: end` lines. No HTTP client and
//! no JSON parsing: the subscribers must cost the load generator little beside the creates,
//! on the same cores as chatd.
//!
//! A subscriber behaves as a browser's `EventSource`: after an `end` event (chatd ended the
//! stream, e.g. because it fell too far behind) it waits the `retry` chatd asks for (1 s) and
//! reconnects with `Last-Event-ID`, so the stream resumes from storage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long a subscriber waits before reconnecting after an `end` event (chatd's `retry`).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// When the subscribers stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Running,
    /// Each once it has received this message number.
    At(i64),
    Now,
}

/// Messages a subscriber received in one read of its socket: numbers `first..=last`, at
/// `at` microseconds after the subscribers' origin.
#[derive(Debug, Clone, Copy)]
struct Burst {
    first: i64,
    last: i64,
    at: u64,
}

/// What one subscriber received.
#[derive(Debug, Default)]
struct Received {
    events: u64,
    /// `end` events: chatd ended the stream (and the subscriber reconnected).
    ended: u64,
    /// Events whose number was not the one after the previous (a gap or a duplicate).
    out_of_order: u64,
    last: Option<i64>,
    bursts: Vec<Burst>,
    /// The `id:` of the event being read, until its `event:` line says what it names: a
    /// message, or the position an `end` event hands back (no message).
    pending: Option<i64>,
}

impl Received {
    /// Scans complete lines for `message` events' ids and `end` events (chatd writes an
    /// event's `id:` before its `event:`); returns whether an `end` came.
    fn scan(&mut self, lines: &[u8], at: u64) -> bool {
        let mut ended = false;
        for line in lines.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(id) = line.strip_prefix(b"id:") {
                self.pending = std::str::from_utf8(id).ok().and_then(|s| s.trim_start().parse::<i64>().ok());
            } else if line == b"event: message" {
                if let Some(id) = self.pending.take() {
                    self.message(id, at);
                }
            } else if line == b"event: end" {
                self.pending = None;
                self.ended += 1;
                ended = true;
            }
        }
        ended
    }

    fn message(&mut self, id: i64, at: u64) {
        self.events += 1;
        if self.last.is_some_and(|last| id != last + 1) {
            self.out_of_order += 1;
        }
        self.last = Some(id);
        match self.bursts.last_mut() {
            Some(b) if b.at == at && b.last + 1 == id => b.last = id,
            _ => self.bursts.push(Burst { first: id, last: id, at }),
        }
    }
}

/// Subscribers following one chat.
#[derive(Debug)]
pub struct Subscribers {
    tasks: Vec<JoinHandle<anyhow::Result<Received>>>,
    finish: watch::Sender<Finish>,
    origin: Instant,
}

/// What the subscribers received, together.
#[derive(Debug)]
pub struct Delivered {
    pub subscribers: usize,
    /// Events received over all subscribers.
    pub events: u64,
    /// Reads of a subscriber's socket that brought messages (each of them counted once per
    /// read): events per read tells how many events chatd wrote at once.
    pub reads: u64,
    /// `end` events received (each followed by a reconnection).
    pub ended: u64,
    /// Subscribers that received at least one `end` event.
    pub subscribers_ended: usize,
    /// Events out of number order (a gap or a duplicate): none when chatd keeps its promise.
    pub out_of_order: u64,
    /// Subscribers that had not received the last message created before they were closed.
    pub short: usize,
    /// Microseconds from each message's create to each subscriber's receipt, for the
    /// messages whose send time is known.
    pub latency: Histogram<u64>,
}

impl Subscribers {
    /// Opens `n` streams of `path` (a chat's `…/messages/stream`) at `addr`; returns once
    /// every one has answered 200, that is, follows the chat. Times are counted from `origin`.
    pub async fn open(addr: SocketAddr, path: &str, n: usize, origin: Instant) -> anyhow::Result<Self> {
        let (finish, watching) = watch::channel(Finish::Running);
        let (ready, mut readied) = mpsc::channel(n.max(1));
        let path: Arc<str> = Arc::from(path);
        let tasks = (0..n)
            .map(|_| tokio::spawn(follow(addr, path.clone(), origin, ready.clone(), watching.clone())))
            .collect::<Vec<_>>();
        drop(ready);
        let mut subscribers = Subscribers { tasks, finish, origin };
        for _ in 0..n {
            if readied.recv().await.is_none() {
                // A subscriber ended before it followed: its error says why.
                let _ = subscribers.finish.send(Finish::Now);
                for t in std::mem::take(&mut subscribers.tasks) {
                    t.await??;
                }
                anyhow::bail!("a subscriber ended before it followed the chat");
            }
        }
        Ok(subscribers)
    }

    /// Microseconds from the subscribers' origin to `at`.
    pub fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_micros() as u64
    }

    /// Lets each subscriber run until it has received message `last` (the last one created
    /// in the chat; `None`: none was), for at most `grace`; closes them all and returns what
    /// they received, with each message's delivery latency from its send time in `sent`
    /// (microseconds since the origin, by message number).
    pub async fn finish(
        self,
        last: Option<i64>,
        grace: Duration,
        sent: &std::collections::HashMap<i64, u64>,
    ) -> anyhow::Result<Delivered> {
        let _ = self.finish.send(last.map_or(Finish::Now, Finish::At));
        let finish = self.finish;
        let stop = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = finish.send(Finish::Now);
        });
        let mut d = Delivered {
            subscribers: self.tasks.len(),
            events: 0,
            reads: 0,
            ended: 0,
            subscribers_ended: 0,
            out_of_order: 0,
            short: 0,
            latency: crate::hist(),
        };
        for t in self.tasks {
            let r = t.await??;
            d.events += r.events;
            d.reads += r.bursts.len() as u64;
            d.ended += r.ended;
            d.subscribers_ended += usize::from(r.ended > 0);
            d.out_of_order += r.out_of_order;
            d.short += usize::from(last.is_some_and(|l| r.last.is_none_or(|got| got < l)));
            for b in &r.bursts {
                for number in b.first..=b.last {
                    if let Some(&s) = sent.get(&number) {
                        d.latency.record(b.at.saturating_sub(s).max(1))?;
                    }
                }
            }
        }
        stop.abort();
        Ok(d)
    }
}

/// One subscriber: follows `path` until told to finish, reconnecting after each `end`.
async fn follow(
    addr: SocketAddr,
    path: Arc<str>,
    origin: Instant,
    ready: mpsc::Sender<()>,
    mut finish: watch::Receiver<Finish>,
) -> anyhow::Result<Received> {
    let mut got = Received::default();
    let mut ready = Some(ready);
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let resume = got.last.map(|l| format!("Last-Event-ID: {l}\r\n")).unwrap_or_default();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n");
        stream.write_all(request.as_bytes()).await?;
        buf.clear();
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            anyhow::ensure!(stream.read_buf(&mut buf).await? > 0, "the stream closed before its answer");
        };
        anyhow::ensure!(
            buf.starts_with(b"HTTP/1.1 200"),
            "stream answered {}",
            String::from_utf8_lossy(&buf[..head]).lines().next().unwrap_or_default()
        );
        buf.drain(..head);
        if let Some(r) = ready.take() {
            r.send(()).await?;
        }
        // Events until chatd ends the stream, or until this subscriber is done.
        loop {
            if let Some(end) = buf.iter().rposition(|b| *b == b'\n') {
                let at = origin.elapsed().as_micros() as u64;
                let ended = got.scan(&buf[..end], at);
                buf.drain(..=end);
                if ended {
                    break;
                }
            }
            match *finish.borrow_and_update() {
                Finish::Now => return Ok(got),
                Finish::At(last) if got.last.is_some_and(|l| l >= last) => return Ok(got),
                _ => {}
            }
            tokio::select! {
                read = stream.read_buf(&mut buf) => {
                    anyhow::ensure!(read? > 0, "chatd closed a stream without an end event");
                }
                _ = finish.changed() => {}
            }
        }
        drop(stream);
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            _ = finish.wait_for(|f| *f == Finish::Now) => return Ok(got),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Received;

    #[test]
    fn a_scan_counts_ids_end_events_and_numbers_out_of_order_and_groups_a_read_s_messages() {
        let mut r = Received::default();
        let read = b"9f\r\nid: 7\nevent: message\ndata: {\"number\":7}\n\n\r\n10\r\nid: 8\nevent: message\n";
        assert!(!r.scan(read, 100));
        assert!(!r.scan(b":\n\nid:10\nevent: message\ndata: {}\n", 200));
        assert!(!r.scan(b"data: {}\n\nevent: edit\ndata: {\"number\":7}\n", 250));
        assert!(r.scan(b"id: 10\nevent: end\nretry: 1000\ndata: {\"reason\":\"lagged\"}", 300));
        assert_eq!((r.events, r.ended, r.out_of_order, r.last), (3, 1, 1, Some(10)));
        let bursts: Vec<_> = r.bursts.iter().map(|b| (b.first, b.last, b.at)).collect();
        assert_eq!(bursts, [(7, 8, 100), (10, 10, 200)]);
    }
}
