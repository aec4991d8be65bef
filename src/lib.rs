//! A stock-exchange matching server: length-framed XML over TCP, PostgreSQL as the
//! book of record, a prefork supervisor with pinned workers.
//!
//! The production path of a request, one module per stage: a worker's handler thread
//! takes it from [`server::intake`] (which frames it with [`framing::examine`]), then
//! [`protocol::parse`] -> [`command::check`] (every rule the request alone can break)
//! -> [`exchange::execute`] (the database, through [`store`]) -> [`protocol::render`],
//! and [`durability`] sends the answer once its commits are on disk, through
//! [`server::courier`].

#[cfg(feature = "full")]
pub mod audit;
pub mod command;
#[cfg(feature = "full")]
pub mod durability;
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
pub mod watchdog;
#[cfg(feature = "full")]
pub mod wire;
