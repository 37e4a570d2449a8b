//! Synthetic text and bulk preloading.

use std::path::Path;

use chatd_core::{AppName, AppToken, ChatNumber, MessageBody};
use chatd_store_sqlite::BulkLoader;

/// A small deterministic generator (xorshift64*): the same seed gives the same data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "zu", "ban", "tor", "el", "qui", "sa", "do", "ri",
    "mon", "fa", "gle", "pra", "nu", "os", "te",
];

/// A vocabulary of pseudo-words; word `i` is more frequent than word `i + 1` (skewed picks).
#[derive(Debug, Clone)]
pub struct Words(Vec<String>);

impl Words {
    pub fn new(size: usize) -> Self {
        let mut rng = Rng::new(7);
        let words = (0..size)
            .map(|_| (0..2 + rng.below(3)).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect::<String>())
            .collect();
        Words(words)
    }

    /// The `rank`-th most frequent word.
    pub fn word(&self, rank: usize) -> &str {
        &self.0[rank % self.0.len()]
    }

    /// A message body of 6–14 words, skewed towards frequent words.
    pub fn body(&self, rng: &mut Rng) -> String {
        let n = 6 + rng.below(9);
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            let r = rng.below(1 << 16) as f64 / 65536.0;
            out.push_str(self.word((r * r * self.0.len() as f64) as usize));
        }
        out
    }
}

/// What a preload made: the big chat to search, and chats to write into.
#[derive(Debug, Clone)]
pub struct Preloaded {
    pub big_chat: (AppToken, ChatNumber),
    pub small_chats: Vec<(AppToken, ChatNumber)>,
    pub messages: u64,
}

/// Where a preload's rows go, the same for every backend so that their searches compare:
/// [`Layout::APPS`] applications; chat slot 0 is the big chat, the first chat of the first
/// application, holding a tenth of the messages; slots `1..=chats` follow, slot `1 + i` in
/// application `i % APPS`; the rest of the messages go round the small chats; every body
/// comes from one seeded generator, in load order.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub messages: u64,
    pub chats: usize,
}

impl Layout {
    /// Applications a preload creates.
    pub const APPS: usize = 10;

    /// The application of chat slot `slot`.
    pub fn app_of(&self, slot: usize) -> usize {
        slot.saturating_sub(1) % Self::APPS
    }

    /// Chat slots in the order they are created: the big chat first.
    pub fn slots(&self) -> std::ops::RangeInclusive<usize> {
        0..=self.chats
    }

    /// The chat slot of the `i`-th message loaded.
    pub fn slot_of(&self, i: u64) -> usize {
        if i < self.messages / 10 { 0 } else { 1 + (i as usize) % self.chats.max(1) }
    }

    /// Every message in load order: its chat slot and its body.
    pub fn messages<'w>(&self, words: &'w Words) -> impl Iterator<Item = (usize, String)> + 'w {
        let (layout, mut rng) = (*self, Rng::new(42));
        (0..self.messages).map(move |i| (layout.slot_of(i), words.body(&mut rng)))
    }
}

/// Loads `messages` messages into the embedded store under `dir`, as [`Layout`] places them.
pub fn preload(dir: &Path, messages: u64, chats: usize, words: &Words) -> anyhow::Result<Preloaded> {
    let layout = Layout { messages, chats };
    let mut loader = BulkLoader::open(dir)?;
    let mut apps = Vec::new();
    for i in 0..Layout::APPS {
        apps.push(loader.application(&AppName::parse(format!("bench app {i}"))?)?);
    }
    let mut slots = Vec::new();
    for slot in layout.slots() {
        let (token, app_id) = &apps[layout.app_of(slot)];
        let (number, id) = loader.chat(*app_id)?;
        slots.push((token.clone(), number, id));
    }
    for (slot, body) in layout.messages(words) {
        loader.message(slots[slot].2, &MessageBody::parse(body, usize::MAX)?)?;
    }
    loader.finish()?;
    let mut chats = slots.into_iter().map(|(t, n, _)| (t, n));
    Ok(Preloaded {
        big_chat: chats.next().ok_or_else(|| anyhow::anyhow!("no big chat"))?,
        small_chats: chats.collect(),
        messages,
    })
}
