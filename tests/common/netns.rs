//! Hosts made of network namespaces on one machine: each host a namespace with one
//! link, `eth0`, plugged into a bridge that lives in a namespace of its own, so every
//! address exists only inside namespaces the test made. Needs root, as CI has.

use std::process::{Command, Output, Stdio};

/// Whether this process may make namespaces (and run PostgreSQL as the postgres user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command to completion and fails the test, with its output, if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    // From /: the postgres user may not enter the repository (under /root, say).
    let output = Command::new(program)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        super::output_text(&output)
    );
    output
}

/// A bridge and the hosts plugged into it, all on `10.77.0.0/24` (private to these
/// namespaces, so two networks never clash). Every host's processes are killed and
/// every namespace deleted when it is dropped.
pub struct Network {
    bridge: String,
    hosts: std::cell::RefCell<Vec<String>>,
}

/// One host: a namespace with one address.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub namespace: String,
    pub address: String,
}

impl Network {
    pub fn new() -> Network {
        let bridge = format!("ex{}lan", std::process::id());
        run("ip", &["netns", "add", &bridge]);
        run(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        Network {
            bridge,
            hosts: Default::default(),
        }
    }

    /// Adds host `name` at 10.77.0.`number`.
    pub fn host(&self, name: &str, number: u8) -> Host {
        let host = Host {
            name: name.to_string(),
            namespace: format!("ex{}{name}", std::process::id()),
            address: format!("10.77.0.{number}"),
        };
        let ns = host.namespace.as_str();
        run("ip", &["netns", "add", ns]);
        self.hosts.borrow_mut().push(ns.to_string());
        // The pair is made inside the bridge's namespace, its far end moved to the
        // host's: no link ever exists in the machine's own namespace.
        let port = format!("v{name}");
        let bridge = self.bridge.as_str();
        run(
            "ip",
            &[
                "-n", bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ],
        );
        run("ip", &["-n", bridge, "link", "set", &port, "master", "br0"]);
        run("ip", &["-n", bridge, "link", "set", &port, "up"]);
        let cidr = format!("{}/24", host.address);
        run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"]);
        run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        host
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Quietly: this may run while a failed test unwinds.
        for ns in self.hosts.borrow().iter() {
            kill_all_in(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge])
            .status();
    }
}

fn kill_all_in(namespace: &str) {
    let pids = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Host {
    /// Runs `body` on a thread inside this host's namespace; processes it starts and
    /// threads it spawns are inside too.
    pub fn enter<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.namespace);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).expect("the host's namespace");
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("enter the host's namespace");
                    body()
                })
                .join()
                .expect("the test body")
        })
    }

    /// A command that runs `program` in this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace, program])
            .current_dir("/");
        command
    }

    /// `ip netns exec <host>`: a wrapper that execs what follows inside the host.
    pub fn wrapper(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.namespace]
    }

    /// Plugs the host's link in or out: while out, nothing it sends or is sent arrives,
    /// and nobody is told.
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        run("ip", &["-n", &self.namespace, "link", "set", "eth0", state]);
    }

    /// Kills every process in the host at once: a host that dies says nothing.
    pub fn kill_all(&self) {
        kill_all_in(&self.namespace);
    }

    /// Whether any process still runs in the host.
    pub fn has_processes(&self) -> bool {
        let output = run("ip", &["netns", "pids", &self.namespace]);
        !output.stdout.trim_ascii().is_empty()
    }

    /// Cuts this host off from `others` and them from it (a partition), leaving its
    /// other links alone. As this host sees it, packets vanish and nobody is told:
    /// what it sends arrives, but every answer is dropped on the way back (a blackhole
    /// route on the others' side), so its calls to them end only by their timeouts,
    /// as over a real network. (A blackhole route on its own side would fail its
    /// new connections at once, which no real partition does.)
    pub fn cut_off_from(&self, others: &[&Host]) {
        for other in others {
            let to_self = format!("{}/32", self.address);
            run(
                "ip",
                &[
                    "-n",
                    &other.namespace,
                    "route",
                    "add",
                    "blackhole",
                    &to_self,
                ],
            );
        }
    }
}
