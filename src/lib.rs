//! A stock-exchange matching server: length-framed XML over TCP, PostgreSQL as the
//! book of record, a prefork supervisor with pinned workers.
//!
//! A request flows through stages that are each a plain function:
//! [`framing::examine`] -> [`protocol::parse`] -> [`exchange::execute`] -> [`protocol::render`],
//! and the answer goes out once [`exchange::settle`] (or a worker's flusher) has made
//! its commits durable.

#[cfg(feature = "full")]
pub mod audit;
#[cfg(feature = "full")]
pub mod exchange;
pub mod framing;
#[cfg(feature = "full")]
pub mod metrics;
#[cfg(feature = "full")]
pub mod migrations;
pub mod model;
pub mod number;
#[cfg(feature = "full")]
pub mod passfile;
pub mod protocol;
pub mod rejection;
#[cfg(feature = "full")]
pub mod server;
#[cfg(feature = "full")]
pub mod store;
#[cfg(feature = "full")]
pub mod tls;
#[cfg(feature = "full")]
pub mod wire;
