//! A stock-exchange matching server: length-framed XML over TCP, PostgreSQL as the
//! book of record, a prefork supervisor with pinned workers.
//!
//! A request flows through stages that are each a plain function:
//! [`framing::examine`] -> [`protocol::parse`] -> [`exchange::execute`] -> [`protocol::render`],
//! and the answer goes out once [`exchange::settle`] (or a worker's flusher) has made
//! its commits durable.

pub mod audit;
pub mod exchange;
pub mod framing;
pub mod metrics;
pub mod migrations;
pub mod model;
pub mod number;
pub mod passfile;
pub mod protocol;
pub mod rejection;
pub mod server;
pub mod store;
pub mod tls;
pub mod wire;
