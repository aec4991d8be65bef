//! Model check: random sequences of creates, orders, queries and cancels run through
//! the exchange on a real database, every answer and every final holding compared
//! with a small in-memory model of PROTOCOL.md's rules.

mod common;

use common::Exchange;
use exchange::protocol::tree::Element;
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

const ACCOUNTS: [&str; 3] = ["1", "2", "3"];
const SYMBOLS: [&str; 2] = ["A", "B"];

#[derive(Clone, Debug)]
enum Op {
    CreateAccount {
        account: usize,
        balance: Decimal,
    },
    CreateShares {
        sym: usize,
        account: usize,
        shares: Decimal,
    },
    Order {
        account: usize,
        sym: usize,
        amount: Decimal,
        limit: Decimal,
    },
    Query {
        account: usize,
        order: usize,
    },
    Cancel {
        account: usize,
        order: usize,
    },
}

fn decimal(units: i64, scale: u32) -> Decimal {
    Decimal::new(units, scale)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..3usize, 0..400i64).prop_map(|(account, b)| Op::CreateAccount { account, balance: decimal(b * 25, 1) }),
        1 => (0..2usize, 0..3usize, 1..40i64).prop_map(|(sym, account, s)| Op::CreateShares { sym, account, shares: decimal(s, 1) }),
        6 => (0..3usize, 0..2usize, prop_oneof![-20..0i64, 1..=20i64], 1..16i64).prop_map(|(account, sym, a, l)| Op::Order {
            account,
            sym,
            amount: decimal(a, 1),
            limit: decimal(l * 25, 2),
        }),
        2 => (0..3usize, 0..12usize).prop_map(|(account, order)| Op::Query { account, order }),
        2 => (0..3usize, 0..12usize).prop_map(|(account, order)| Op::Cancel { account, order }),
    ]
}

/// Every account funded with cash and shares of every symbol, so that most orders can
/// open and trade; the random part then adds, spends and refuses.
fn setup() -> impl Strategy<Value = Vec<Op>> {
    (
        proptest::collection::vec(1..400i64, 3),
        proptest::collection::vec(1..40i64, 6),
    )
        .prop_map(|(cash, shares)| {
            let accounts = (0..3).map(|account| Op::CreateAccount {
                account,
                balance: decimal(cash[account] * 25, 1),
            });
            let positions = (0..6).map(|i| Op::CreateShares {
                sym: i % 2,
                account: i / 2,
                shares: decimal(shares[i], 1),
            });
            accounts.chain(positions).collect()
        })
}

#[derive(Clone, Debug)]
struct ModelOrder {
    server_id: String,
    account: usize,
    sym: usize,
    is_buy: bool,
    limit: Decimal,
    open: Decimal,
    canceled: Option<Decimal>,
    fills: Vec<(Decimal, Decimal)>,
}

#[derive(Default)]
struct Model {
    balances: BTreeMap<usize, Decimal>,
    positions: BTreeMap<(usize, usize), Decimal>,
    orders: Vec<ModelOrder>,
}

/// What the model expects an operation to answer.
#[derive(Debug, PartialEq)]
enum Expect {
    Created,
    Error,
    Opened,
    Parts(String, Vec<String>),
}

impl Model {
    fn apply(&mut self, op: &Op) -> Expect {
        match *op {
            Op::CreateAccount { account, balance } => {
                if self.balances.contains_key(&account) {
                    return Expect::Error;
                }
                self.balances.insert(account, balance);
                Expect::Created
            }
            Op::CreateShares {
                sym,
                account,
                shares,
            } => {
                if !self.balances.contains_key(&account) {
                    return Expect::Error;
                }
                *self.positions.entry((account, sym)).or_default() += shares;
                Expect::Created
            }
            Op::Order {
                account,
                sym,
                amount,
                limit,
            } => self.order(account, sym, amount, limit),
            Op::Query { account, order } => match self.owned(account, order) {
                Some(i) => Expect::Parts("status".into(), parts(&self.orders[i])),
                None => Expect::Error,
            },
            Op::Cancel { account, order } => match self.owned(account, order) {
                Some(i) if !self.orders[i].open.is_zero() => {
                    let o = &mut self.orders[i];
                    let open = o.open;
                    o.canceled = Some(open);
                    o.open = Decimal::ZERO;
                    let (is_buy, limit, sym) = (o.is_buy, o.limit, o.sym);
                    if is_buy {
                        *self.balances.entry(account).or_default() += open * limit;
                    } else {
                        *self.positions.entry((account, sym)).or_default() += open;
                    }
                    Expect::Parts("canceled".into(), parts(&self.orders[i]))
                }
                _ => Expect::Error,
            },
        }
    }

    fn owned(&self, account: usize, order: usize) -> Option<usize> {
        (order < self.orders.len() && self.orders[order].account == account).then_some(order)
    }

    fn order(&mut self, account: usize, sym: usize, amount: Decimal, limit: Decimal) -> Expect {
        let Some(balance) = self.balances.get(&account).copied() else {
            return Expect::Error;
        };
        let is_buy = amount > Decimal::ZERO;
        let shares = amount.abs();
        if is_buy {
            if balance < shares * limit {
                return Expect::Error;
            }
            *self.balances.get_mut(&account).expect("exists") -= shares * limit;
        } else {
            let held = self
                .positions
                .get(&(account, sym))
                .copied()
                .unwrap_or_default();
            if held < shares {
                return Expect::Error;
            }
            *self.positions.get_mut(&(account, sym)).expect("held") -= shares;
        }
        let mut incoming = ModelOrder {
            server_id: String::new(),
            account,
            sym,
            is_buy,
            limit,
            open: shares,
            canceled: None,
            fills: vec![],
        };
        // The other side's open orders in priority order: best price, then oldest.
        let mut book: Vec<usize> = (0..self.orders.len())
            .filter(|&i| {
                let o = &self.orders[i];
                o.sym == sym
                    && o.is_buy != is_buy
                    && !o.open.is_zero()
                    && if is_buy {
                        o.limit <= limit
                    } else {
                        o.limit >= limit
                    }
            })
            .collect();
        book.sort_by(|&a, &b| {
            let (x, y) = (&self.orders[a], &self.orders[b]);
            let by_price = if is_buy {
                x.limit.cmp(&y.limit)
            } else {
                y.limit.cmp(&x.limit)
            };
            by_price.then(a.cmp(&b))
        });
        for i in book {
            if incoming.open.is_zero() {
                break;
            }
            let resting = &mut self.orders[i];
            let traded = incoming.open.min(resting.open);
            let price = resting.limit;
            resting.open -= traded;
            resting.fills.push((traded, price));
            incoming.open -= traded;
            incoming.fills.push((traded, price));
            let resting_account = resting.account;
            if is_buy {
                *self.balances.entry(resting_account).or_default() += traded * price;
                *self.balances.entry(account).or_default() += traded * (limit - price);
                *self.positions.entry((account, sym)).or_default() += traded;
            } else {
                *self.positions.entry((resting_account, sym)).or_default() += traded;
                *self.balances.entry(account).or_default() += traded * price;
            }
        }
        self.orders.push(incoming);
        Expect::Opened
    }
}

fn parts(o: &ModelOrder) -> Vec<String> {
    let mut out = Vec::new();
    if !o.open.is_zero() {
        out.push(format!("open shares={}", o.open.normalize()));
    }
    if let Some(c) = o.canceled {
        out.push(format!("canceled shares={}", c.normalize()));
    }
    for (shares, price) in &o.fills {
        out.push(format!(
            "executed shares={} price={}",
            shares.normalize(),
            price.normalize()
        ));
    }
    out
}

fn request(op: &Op, model: &Model) -> String {
    let order_id = |i: usize| {
        model
            .orders
            .get(i)
            .map_or_else(|| "999999".to_string(), |o| o.server_id.clone())
    };
    match *op {
        Op::CreateAccount { account, balance } => {
            format!(
                r#"<create><account id="{}" balance="{balance}"/></create>"#,
                ACCOUNTS[account]
            )
        }
        Op::CreateShares {
            sym,
            account,
            shares,
        } => format!(
            r#"<create><symbol sym="{}"><account id="{}">{shares}</account></symbol></create>"#,
            SYMBOLS[sym], ACCOUNTS[account]
        ),
        Op::Order {
            account,
            sym,
            amount,
            limit,
        } => format!(
            r#"<transactions id="{}"><order sym="{}" amount="{amount}" limit="{limit}"/></transactions>"#,
            ACCOUNTS[account], SYMBOLS[sym]
        ),
        Op::Query { account, order } => {
            format!(
                r#"<transactions id="{}"><query id="{}"/></transactions>"#,
                ACCOUNTS[account],
                order_id(order)
            )
        }
        Op::Cancel { account, order } => {
            format!(
                r#"<transactions id="{}"><cancel id="{}"/></transactions>"#,
                ACCOUNTS[account],
                order_id(order)
            )
        }
    }
}

fn observed(item: &Element) -> Expect {
    match item.name.as_str() {
        "created" => Expect::Created,
        "error" => Expect::Error,
        "opened" => Expect::Opened,
        name => Expect::Parts(name.to_string(), common::parts(item)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_exchange_behaves_like_the_model(setup in setup(), random in proptest::collection::vec(op(), 1..60)) {
        let ops: Vec<Op> = setup.into_iter().chain(random).collect();
        let mut ex = Exchange::new("model");
        let mut model = Model::default();
        for (step, op) in ops.iter().enumerate() {
            let xml = request(op, &model);
            let answer = ex.send(&xml);
            prop_assert_eq!(answer.len(), 1);
            let expected = model.apply(op);
            let got = observed(&answer[0]);
            prop_assert_eq!(&got, &expected, "step {}: {:?} answered {:?}", step, op, answer[0]);
            if got == Expect::Opened {
                model.orders.last_mut().expect("model opened too").server_id = answer[0].get("id").to_string();
            }
        }
        for (&account, balance) in &model.balances {
            prop_assert_eq!(ex.balance(ACCOUNTS[account]), balance.normalize().to_string(), "balance of {}", account);
        }
        for (&(account, sym), shares) in &model.positions {
            prop_assert_eq!(ex.shares(ACCOUNTS[account], SYMBOLS[sym]), shares.normalize().to_string());
        }
        let report = exchange::audit::audit(&mut common::sql(&ex.url)).expect("audit");
        prop_assert!(report.discrepancies.is_empty(), "{:?}", report.discrepancies);
    }
}
