//! Faults under load: a worker killed with SIGKILL, SIGTERM while clients trade, and
//! SIGHUP, which must not kill anything.

mod common;

use common::{audit_holds, fresh_database, Load, Outcome, Server};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::time::{Duration, Instant};

fn answered(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Answered { errors } if errors.iter().all(|e| e.contains("insufficient")))
}

#[test]
fn a_worker_killed_under_load_is_replaced_and_leaves_nothing_half_done() {
    let server = Server::start(&fresh_database("fault_kill"), 3, &[]);
    let load = Load::start(&server, 8, "K");
    std::thread::sleep(Duration::from_millis(800));
    let (killed_at, replaced_after) = server.kill_worker(server.workers()[0], 3);
    std::thread::sleep(Duration::from_millis(800));
    let outcomes = load.finish();
    eprintln!("worker replaced after {replaced_after:?}");
    assert!(
        replaced_after < Duration::from_secs(1),
        "replacement took {replaced_after:?}"
    );

    let after_kill: Vec<&Outcome> = outcomes
        .iter()
        .filter(|(at, _)| *at > killed_at)
        .map(|(_, o)| o)
        .collect();
    let served_after = after_kill.iter().filter(|o| answered(o)).count();
    assert!(
        served_after > 20,
        "clients were not served after the kill: {served_after}"
    );
    // Only requests the killed worker held can have failed: at most its share of clients.
    let broken: Vec<&Outcome> = outcomes
        .iter()
        .map(|(_, o)| o)
        .filter(|o| !answered(o))
        .collect();
    eprintln!(
        "{} requests, {} lost with the killed worker",
        outcomes.len(),
        broken.len()
    );
    assert!(broken.len() <= 8, "{broken:?}");
    audit_holds(&server.url);
}

#[test]
fn sigterm_under_load_answers_requests_in_flight_then_exits_zero() {
    let mut server = Server::start(&fresh_database("fault_term"), 3, &[]);
    let workers = server.workers();
    let load = Load::start(&server, 8, "T");
    std::thread::sleep(Duration::from_millis(800));
    let signaled_at = Instant::now();
    let status = server.stop();
    let stopped_after = signaled_at.elapsed();
    let outcomes = load.finish();
    assert_eq!(status.code(), Some(0));
    assert!(
        stopped_after < Duration::from_secs(10),
        "stop took {stopped_after:?} (grace is 10 s)"
    );
    for pid in workers {
        assert!(
            kill(Pid::from_raw(pid), None).is_err(),
            "worker {pid} outlived the supervisor"
        );
    }
    // Before the signal everything was served; after it, a client is either served or
    // refused: no answer is cut off halfway, no server error appears.
    let mut refused = 0;
    for (at, outcome) in &outcomes {
        match outcome {
            o if answered(o) => {}
            Outcome::Refused if *at >= signaled_at => refused += 1,
            Outcome::Broken(why) if *at >= signaled_at && !why.starts_with("partial") => {
                refused += 1
            }
            other => panic!(
                "{other:?} at {:?} after the signal",
                at.checked_duration_since(signaled_at)
            ),
        }
    }
    eprintln!(
        "{} requests; {refused} refused or reset after SIGTERM; stopped in {stopped_after:?}",
        outcomes.len()
    );
    audit_holds(&server.url);
}

#[test]
fn sighup_to_the_server_or_a_worker_is_logged_and_changes_nothing() {
    let server = Server::start_under(&[], &fresh_database("fault_hup"), 2, &[]);
    let workers = server.workers();
    let load = Load::start(&server, 4, "H");
    std::thread::sleep(Duration::from_millis(300));
    for pid in [server.pid(), workers[0]] {
        kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).expect("send SIGHUP");
        std::thread::sleep(Duration::from_millis(300));
    }
    let outcomes = load.finish();
    assert_eq!(server.workers(), workers, "a worker died or was replaced");
    let failed: Vec<_> = outcomes.iter().filter(|(_, o)| !answered(o)).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        server.send("<create/>").is_empty(),
        "the server still answers"
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("SIGHUP ignored").count(),
        1,
        "the supervisor says once what SIGHUP does; the log: {log}"
    );
    audit_holds(&server.url);
}
