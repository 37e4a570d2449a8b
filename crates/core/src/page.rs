//! Keyset pagination: what a list request asks for and what it gets back.
//!
//! `after` and `before` are exclusive bounds on the key (a number; for applications, the
//! token of a listed application). `order` picks the direction; a page is the first `limit`
//! rows inside the bounds in that direction. The next page moves the leading bound to the
//! last key of this page: `after` when ascending, `before` when descending.

use crate::InvalidInput;

/// Rows per page: 1 ..= 1000, 100 by default (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub const MAX: u32 = 1000;
    pub const DEFAULT: Limit = Limit(100);

    pub fn new(n: u32) -> Result<Self, InvalidInput> {
        if (1..=Self::MAX).contains(&n) {
            Ok(Limit(n))
        } else {
            Err(InvalidInput::TooLong { max: Self::MAX as usize, unit: "rows" })
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Direction of a list. The discriminants are stable: adapters index by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc = 0,
    Desc = 1,
}

/// A page request over keys of type `K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<K> {
    pub limit: Limit,
    pub after: Option<K>,
    pub before: Option<K>,
    pub order: Order,
}

impl<K> Default for Page<K> {
    fn default() -> Self {
        Page { limit: Limit::DEFAULT, after: None, before: None, order: Order::Asc }
    }
}

/// One page of results, in the requested order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    /// Whether rows exist beyond the last item in the page's direction.
    pub more: bool,
}
