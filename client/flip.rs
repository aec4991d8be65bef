//! `exchange-client flip`: the classic scalability scenario. Odd users hold cash and
//! buy, even users hold shares and sell, all released at once through a barrier;
//! afterwards every holding must have flipped exactly. Checked through the protocol
//! alone: probing orders that must open (and are canceled) or must be refused.

use crate::Target;
use clap::Args;
use exchange::protocol::reply::read_reply;
use exchange::protocol::tree::Element;
use exchange::wire::round_trip;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// Shares each pair trades, and the price: a buyer starts with exactly SHARES x PRICE.
const SHARES: &str = "4";
const PRICE: &str = "12.5";
const CASH: &str = "50";
/// One unit more than a holding, in the smallest step the protocol allows.
const SHARES_PLUS_ONE_STEP: &str = "4.00000001";
const CASH_PLUS_ONE_STEP: &str = "50.00000001";
const TINY: &str = "0.00000001";
const UNREACHABLE_PRICE: &str = "1000000";

#[derive(Args, Clone, Debug)]
pub struct FlipArgs {
    #[command(flatten)]
    pub target: Target,
    /// Users; odd-numbered ones buy, even-numbered ones sell (an even number, at least 2).
    #[arg(long, default_value_t = 20)]
    pub users: usize,
}

struct Client {
    addr: SocketAddr,
    timeout: Duration,
}

impl Client {
    fn send(&self, xml: &str) -> Result<Vec<Element>, String> {
        let answer = round_trip(self.addr, xml.as_bytes(), self.timeout)
            .map_err(|e| format!("transport: {e}"))?;
        read_reply(&answer).map_err(|e| format!("unreadable answer: {e}"))
    }

    fn one(&self, account: &str, child: &str) -> Result<Element, String> {
        let mut items = self.send(&format!(
            r#"<transactions id="{account}">{child}</transactions>"#
        ))?;
        items.pop().ok_or_else(|| "empty answer".to_string())
    }
}

pub fn run(args: &FlipArgs) -> Result<ExitCode, String> {
    if args.users < 2 || !args.users.is_multiple_of(2) {
        return Err("--users must be an even number, at least 2".into());
    }
    let client = Arc::new(Client {
        addr: args.target.addr()?,
        timeout: args.target.timeout(),
    });
    let tag = crate::workload::run_tag();
    let symbol = format!("F{tag}");
    // User n (1-based): odd buys, even sells.
    let users: Vec<(String, bool)> = (1..=args.users)
        .map(|n| (format!("{tag}{n:06}"), n % 2 == 1))
        .collect();

    set_up(&client, &symbol, &users)?;

    let orders = place_all_at_once(&client, &symbol, &users)?;

    let mut mismatches = Vec::new();
    for ((id, buyer), order) in users.iter().zip(&orders) {
        check_user(&client, &symbol, id, *buyer, order, &mut mismatches)?;
    }
    if mismatches.is_empty() {
        println!("flip: {} users, every holding flipped exactly", users.len());
        Ok(ExitCode::SUCCESS)
    } else {
        for m in &mismatches {
            println!("MISMATCH {m}");
        }
        println!("flip FAILED: {} mismatches", mismatches.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Creates the users' accounts: buyers with cash, sellers with shares of `symbol`.
fn set_up(client: &Client, symbol: &str, users: &[(String, bool)]) -> Result<(), String> {
    let mut setup = String::from("<create>");
    for (id, buyer) in users {
        let cash = if *buyer { CASH } else { "0" };
        setup += &format!(r#"<account id="{id}" balance="{cash}"/>"#);
    }
    setup += &format!(r#"<symbol sym="{symbol}">"#);
    for (id, _) in users.iter().filter(|(_, buyer)| !buyer) {
        setup += &format!(r#"<account id="{id}">{SHARES}</account>"#);
    }
    setup += "</symbol></create>";
    match client.send(&setup)?.iter().find(|i| i.name != "created") {
        Some(bad) => Err(format!("setup refused: {}", bad.text)),
        None => Ok(()),
    }
}

/// Every user places its one order at the same moment (a barrier); returns the
/// orders' ids in the users' order.
fn place_all_at_once(
    client: &Arc<Client>,
    symbol: &str,
    users: &[(String, bool)],
) -> Result<Vec<String>, String> {
    let barrier = Arc::new(Barrier::new(users.len()));
    let threads: Vec<_> = users
        .iter()
        .cloned()
        .map(|(id, buyer)| {
            let (client, barrier) = (client.clone(), barrier.clone());
            let amount = if buyer {
                SHARES.to_string()
            } else {
                format!("-{SHARES}")
            };
            let order = format!(r#"<order sym="{symbol}" amount="{amount}" limit="{PRICE}"/>"#);
            std::thread::spawn(move || {
                barrier.wait();
                client.one(&id, &order)
            })
        })
        .collect();
    let mut orders = Vec::new();
    for thread in threads {
        let answer = thread
            .join()
            .map_err(|_| "a user thread panicked".to_string())??;
        if answer.name != "opened" {
            return Err(format!("a flip order was refused: {}", answer.text));
        }
        orders.push(answer.get("id").to_string());
    }
    Ok(orders)
}

/// The flip order executed in full, and the user now holds exactly what the other side held.
fn check_user(
    client: &Client,
    symbol: &str,
    id: &str,
    buyer: bool,
    order: &str,
    mismatches: &mut Vec<String>,
) -> Result<(), String> {
    check_filled(client, id, order, mismatches)?;
    check_holdings(client, symbol, id, buyer, mismatches)
}

/// The user's flip order must have traded whole, with nothing left open.
fn check_filled(
    client: &Client,
    id: &str,
    order: &str,
    mismatches: &mut Vec<String>,
) -> Result<(), String> {
    let status = client.one(id, &format!(r#"<query id="{order}"/>"#))?;
    let executed: Vec<&Element> = status
        .children
        .iter()
        .filter(|c| c.name == "executed")
        .collect();
    let open = status.children.iter().any(|c| c.name == "open");
    let total: rust_decimal::Decimal = executed
        .iter()
        .filter_map(|e| e.get("shares").parse::<rust_decimal::Decimal>().ok())
        .sum();
    // Compared as numbers: parts of 2.5 and 1.5 add up to "4.0", which is 4 shares.
    let wanted: rust_decimal::Decimal = SHARES
        .parse()
        .map_err(|e| format!("SHARES is not a number: {e}"))?;
    if open || total != wanted {
        mismatches.push(format!(
            "user {id}: order {order} executed {total} of {SHARES} (open: {open})"
        ));
    }
    Ok(())
}

/// The user must hold exactly the other side now: probed with orders that must open
/// (and are canceled at once) and orders one step too large, which must not.
fn check_holdings(
    client: &Client,
    symbol: &str,
    id: &str,
    buyer: bool,
    mismatches: &mut Vec<String>,
) -> Result<(), String> {
    let mut expect = |child: String, opens: bool, what: &str| -> Result<(), String> {
        let answer = client.one(id, &child)?;
        let opened = answer.name == "opened";
        if opened {
            client.one(id, &format!(r#"<cancel id="{}"/>"#, answer.get("id")))?;
        }
        if opened != opens {
            mismatches.push(format!(
                "user {id}: {what}: {}",
                if opened { "opened" } else { &answer.text }
            ));
        }
        Ok(())
    };
    let order = |amount: &str, limit: &str| {
        format!(r#"<order sym="{symbol}" amount="{amount}" limit="{limit}"/>"#)
    };
    if buyer {
        // Now holds exactly SHARES shares and no cash.
        expect(
            order(&format!("-{SHARES}"), UNREACHABLE_PRICE),
            true,
            "cannot sell the shares bought",
        )?;
        expect(
            order(&format!("-{SHARES_PLUS_ONE_STEP}"), UNREACHABLE_PRICE),
            false,
            "holds more shares than bought",
        )?;
        expect(order(TINY, TINY), false, "has cash left")?;
    } else {
        // Now holds exactly SHARES x PRICE in cash and no shares.
        expect(order(SHARES, PRICE), true, "cannot spend the proceeds")?;
        expect(
            order("1", CASH_PLUS_ONE_STEP),
            false,
            "holds more cash than the proceeds",
        )?;
        expect(
            order(&format!("-{TINY}"), UNREACHABLE_PRICE),
            false,
            "has shares left",
        )?;
    }
    Ok(())
}
