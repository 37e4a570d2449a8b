//! Keyset pagination: what a list request asks for and what it gets back.
//!
//! `after` and `before` are exclusive bounds on the key (a number; for applications, the
//! token of a listed application). `order` picks the direction; a page is the first `limit`
//! rows inside the bounds in that direction. The next page moves the leading bound to the
//! last key of this page: `after` when ascending, `before` when descending.

use std::str::FromStr;

use crate::InvalidInput;
use crate::domain::parse_positive;

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

/// An exclusive bound on the numbers of a list of chats or messages: 0 ..= `i64::MAX`.
/// Numbers start at 1, so `after=0` is the first page (how many clients ask for it) and
/// `before=0` an empty one; a bound past the last number is simply not reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NumberBound(i64);

impl NumberBound {
    /// `n`, when it is 0 or positive.
    pub fn new(n: i64) -> Option<Self> {
        (n >= 0).then_some(NumberBound(n))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl From<crate::ChatNumber> for NumberBound {
    fn from(n: crate::ChatNumber) -> Self {
        NumberBound(n.get())
    }
}

impl From<crate::MessageNumber> for NumberBound {
    fn from(n: crate::MessageNumber) -> Self {
        NumberBound(n.get())
    }
}

impl FromStr for NumberBound {
    type Err = InvalidInput;

    /// One spelling per bound, as for numbers: `0`, or digits without sign or leading zeros.
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        if s == "0" {
            return Ok(NumberBound(0));
        }
        parse_positive(s).map(NumberBound).map_err(|_| InvalidInput::NotANonNegativeInteger)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_is_zero_or_a_positive_number_in_its_one_spelling() {
        assert_eq!("0".parse::<NumberBound>().unwrap().get(), 0);
        assert_eq!("7".parse::<NumberBound>().unwrap().get(), 7);
        assert_eq!("9223372036854775807".parse::<NumberBound>().unwrap().get(), i64::MAX);
        for bad in ["", "00", "01", "-0", "-1", "+1", " 1", "1.0", "9223372036854775808", "x"] {
            assert_eq!(bad.parse::<NumberBound>(), Err(InvalidInput::NotANonNegativeInteger), "{bad:?}");
        }
    }
}
