//! The process side of the server: a supervisor that forks workers, and what a worker runs.
//!
//! ```text
//! supervisor (single-threaded, no database) --fork--> worker 0..N
//!   (each worker, once forked: worker::serve, which a test may run without forking)
//! worker: T handler threads sharing one intake (accept + read, one epoll set);
//!         no handler serves until all T are on their CPUs (a barrier)
//! handler: intake turn -> parse -> command::check -> exchange::execute
//!          (PostgreSQL, commits not yet durable) -> render -> durability::Answers
//!   nothing reached the database ------------------------------------> courier
//!   else --channel--> flusher: one WAL flush for all that waits -----> courier
//!                       | cannot vouch (another session or server)
//!                       +--given back--> its handler: waits on its own session -> courier
//! courier: writes each answer at once, or later if the client's socket is full
//! stop: handlers drain and take back their answers -> flusher ends -> courier ends
//!       (worker::wind_down)
//! supervisor --fork--> status (with --metrics-port): /metrics, /live, /ready over HTTP
//! ```

pub mod abandoned;
pub mod affinity;
pub mod answered;
pub mod courier;
pub mod exposition;
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
