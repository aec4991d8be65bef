//! The process side of the server: a supervisor that forks workers, and what a worker runs.
//!
//! ```text
//! supervisor (single-threaded, no database) --fork--> worker 0..N
//! worker: T handler threads sharing one intake (accept + read, one epoll set)
//! handler: parse -> exchange::execute (PostgreSQL, commits not yet durable)
//!          -> render --channel--> flusher: one WAL flush for all that waits -> courier
//! courier: writes each answer at once, or later if the client's socket is full
//! supervisor --fork--> status (with --metrics-port): /metrics, /live, /ready over HTTP
//! ```

pub mod abandoned;
pub mod affinity;
pub mod answered;
pub mod courier;
pub mod exposition;
pub mod flusher;
pub mod handler;
pub mod intake;
pub mod logging;
pub mod migrate;
pub mod settings;
pub mod signals;
pub mod status;
pub mod supervisor;
pub mod worker;

pub use settings::Settings;
