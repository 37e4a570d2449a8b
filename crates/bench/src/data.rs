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

/// Loads `messages` messages: a tenth in one big chat, the rest over `chats` chats of 10
/// applications.
pub fn preload(dir: &Path, messages: u64, chats: usize, words: &Words) -> anyhow::Result<Preloaded> {
    let mut loader = BulkLoader::open(dir)?;
    let mut rng = Rng::new(42);
    let mut apps = Vec::new();
    for i in 0..10 {
        apps.push(loader.application(&AppName::parse(format!("bench app {i}"))?)?);
    }
    let (big_number, big_id) = loader.chat(apps[0].1)?;
    let mut small = Vec::new();
    for i in 0..chats {
        let (token, app_id) = &apps[i % apps.len()];
        let (number, id) = loader.chat(*app_id)?;
        small.push((token.clone(), number, id));
    }
    let big = messages / 10;
    for i in 0..messages {
        let chat = if i < big { big_id } else { small[(i as usize) % small.len()].2 };
        loader.message(chat, &MessageBody::parse(words.body(&mut rng), usize::MAX)?)?;
    }
    loader.finish()?;
    Ok(Preloaded {
        big_chat: (apps[0].0.clone(), big_number),
        small_chats: small.into_iter().map(|(t, n, _)| (t, n)).collect(),
        messages,
    })
}
