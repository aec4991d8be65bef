//! The load workload: its own accounts and symbols, and requests that mix limit orders
//! around a drifting mid price (so about half of them trade) with queries and cancels
//! of the client's own earlier orders, in a chosen share.
//!
//! Prices are whole cents held in integers: the client never uses binary floats.

use rand::rngs::SmallRng;
use rand::RngExt;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};

/// Cash each load account starts with, and shares of each symbol.
const ACCOUNT_CASH: &str = "1000000000";
const ACCOUNT_SHARES: &str = "100000000";
const MID_START_CENTS: i64 = 10_000;
const MID_RANGE_CENTS: (i64, i64) = (1_000, 100_000);
/// How far from the mid a limit may lie, in cents, either way.
const SPREAD_CENTS: i64 = 50;
const RECENT_ORDERS_MAX: usize = 1024;

/// A number for naming one run's accounts and symbols, so that runs against the same
/// database never collide, even when started at the same moment: 12 random digits from
/// the thread's generator, which the operating system's entropy seeds, so that ids
/// stay well inside the protocol's 32.
pub fn run_tag() -> u64 {
    rand::random_range(0..1_000_000_000_000)
}

/// The accounts and symbols of one load run; names carry a run tag so runs never collide.
pub struct Universe {
    pub accounts: Vec<String>,
    pub symbols: Vec<String>,
    mids: Vec<AtomicI64>,
}

impl Universe {
    pub fn new(tag: u64, accounts: usize, symbols: usize) -> Universe {
        Universe {
            accounts: (0..accounts).map(|i| format!("{tag}{i:06}")).collect(),
            symbols: (0..symbols).map(|i| format!("L{tag}S{i}")).collect(),
            mids: (0..symbols)
                .map(|_| AtomicI64::new(MID_START_CENTS))
                .collect(),
        }
    }

    /// `<create>` requests that fund every account with cash and shares of every symbol,
    /// at most `operations_max` operations each.
    pub fn setup_requests(&self, operations_max: usize) -> Vec<String> {
        let per_account = 1 + self.symbols.len();
        let accounts_per_request = (operations_max / per_account).max(1);
        self.accounts
            .chunks(accounts_per_request)
            .map(|chunk| {
                let mut xml = String::from("<create>");
                for id in chunk {
                    let _ = write!(xml, r#"<account id="{id}" balance="{ACCOUNT_CASH}"/>"#);
                }
                for sym in &self.symbols {
                    let _ = write!(xml, r#"<symbol sym="{sym}">"#);
                    for id in chunk {
                        let _ = write!(xml, r#"<account id="{id}">{ACCOUNT_SHARES}</account>"#);
                    }
                    xml.push_str("</symbol>");
                }
                xml.push_str("</create>");
                xml
            })
            .collect()
    }

    /// The symbol's mid after a small random step, in cents.
    fn drift(&self, symbol: usize, rng: &mut SmallRng) -> i64 {
        let step = rng.random_range(-5..=5);
        let (low, high) = MID_RANGE_CENTS;
        let mid = &self.mids[symbol];
        let previous = mid
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some((m + step).clamp(low, high))
            })
            .unwrap_or(MID_START_CENTS);
        (previous + step).clamp(low, high)
    }
}

/// An operation of the request, remembered to read its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Order,
    Query,
    Cancel,
}

/// One connection's generator: its random stream and the orders it opened.
pub struct Generator {
    rng: SmallRng,
    /// Percent of requests that query or cancel instead of placing orders.
    queries_percent: u8,
    /// (account index, order id) of orders this generator opened, newest last.
    recent: VecDeque<(usize, i64)>,
}

impl Generator {
    pub fn new(rng: SmallRng, queries_percent: u8) -> Generator {
        Generator {
            rng,
            queries_percent,
            recent: VecDeque::new(),
        }
    }

    /// The next request: for one account, `operations` operations. `queries_percent` of
    /// requests (once there are orders to name) start with a query or a cancel of an
    /// earlier order of the same account.
    pub fn next_request(
        &mut self,
        universe: &Universe,
        operations: usize,
    ) -> (usize, String, Vec<Op>) {
        let mut ops = Vec::with_capacity(operations);
        let mut body = String::new();
        let account =
            if !self.recent.is_empty() && self.rng.random_range(0..100) < self.queries_percent {
                let pick = self.rng.random_range(0..self.recent.len());
                let (account, id) = self.recent[pick];
                if self.rng.random_bool(0.5) {
                    let _ = write!(body, r#"<query id="{id}"/>"#);
                    ops.push(Op::Query);
                } else {
                    let _ = write!(body, r#"<cancel id="{id}"/>"#);
                    ops.push(Op::Cancel);
                    self.recent.remove(pick);
                }
                account
            } else {
                self.rng.random_range(0..universe.accounts.len())
            };
        while ops.len() < operations {
            let symbol = self.rng.random_range(0..universe.symbols.len());
            let mid = universe.drift(symbol, &mut self.rng);
            // Half the orders are aggressive (priced through the mid, so they find the
            // other side), half passive (priced away from it, so they rest).
            let buy = self.rng.random_bool(0.5);
            let through_mid = self.rng.random_bool(0.5);
            let offset = self.rng.random_range(1..=SPREAD_CENTS);
            let limit = (if buy == through_mid {
                mid + offset
            } else {
                mid - offset
            })
            .max(1);
            let shares = self.rng.random_range(1..=100);
            let sign = if buy { "" } else { "-" };
            let _ = write!(
                body,
                r#"<order sym="{}" amount="{sign}{shares}" limit="{}.{:02}"/>"#,
                universe.symbols[symbol],
                limit / 100,
                limit % 100
            );
            ops.push(Op::Order);
        }
        let xml = format!(
            r#"<transactions id="{}">{body}</transactions>"#,
            universe.accounts[account]
        );
        (account, xml, ops)
    }

    /// Remembers an order the server opened, for later queries and cancels.
    pub fn opened(&mut self, account: usize, id: i64) {
        if self.recent.len() == RECENT_ORDERS_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back((account, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_at_the_same_moment_get_different_tags() {
        let tags: std::collections::HashSet<u64> = (0..100).map(|_| run_tag()).collect();
        assert_eq!(tags.len(), 100);
    }

    #[test]
    fn ids_of_one_run_are_distinct_and_within_the_protocol() {
        let universe = Universe::new(run_tag(), 1000, 10);
        let accounts: std::collections::HashSet<&String> = universe.accounts.iter().collect();
        assert_eq!(accounts.len(), 1000);
        assert!(universe.accounts.iter().all(|id| id.len() <= 32));
    }
}
