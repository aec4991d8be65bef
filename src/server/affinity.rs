//! CPU sets: which CPUs this process may use, and pinning a worker to one of them.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs this process may run on (as `taskset` left them), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// The CPU worker `slot` is pinned to: the slot-th of the allowed ones, cycling.
pub fn cpu_for_slot(allowed: &[usize], slot: usize) -> Option<usize> {
    (!allowed.is_empty()).then(|| allowed[slot % allowed.len()])
}

/// Pins the calling process (and the threads it starts later) to `cpu`.
pub fn pin_to(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cycle_through_the_allowed_cpus() {
        let allowed = [2, 3];
        let picked: Vec<_> = (0..5).map(|slot| cpu_for_slot(&allowed, slot)).collect();
        assert_eq!(picked, [Some(2), Some(3), Some(2), Some(3), Some(2)]);
        assert_eq!(cpu_for_slot(&[], 0), None);
    }

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cpus().is_empty());
    }
}
