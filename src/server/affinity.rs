//! CPU sets: which CPUs this process may use, and pinning workers and their handler
//! threads to them.

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

/// The CPU of each handler thread of worker `slot`, in handler order: handler k of
/// worker i gets the (i × threads + k)-th allowed CPU, cycling, so that the handlers
/// of all the workers spread over the allowed set one per CPU before any doubles up.
pub fn cpus_for_slot(allowed: &[usize], slot: usize, threads: usize) -> Vec<usize> {
    if allowed.is_empty() {
        return Vec::new();
    }
    (0..threads)
        .map(|k| allowed[(slot * threads + k) % allowed.len()])
        .collect()
}

/// Confines the calling thread (and the threads it starts later) to `cpus`.
pub fn pin_to(cpus: &[usize]) -> nix::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_spread_over_the_allowed_cpus_before_doubling_up() {
        let allowed = [2, 3, 5];
        let picked: Vec<_> = (0..3)
            .map(|slot| cpus_for_slot(&allowed, slot, 2))
            .collect();
        assert_eq!(picked, [vec![2, 3], vec![5, 2], vec![3, 5]]);
        let one_each: Vec<_> = (0..4)
            .map(|slot| cpus_for_slot(&allowed, slot, 1))
            .collect();
        assert_eq!(one_each, [vec![2], vec![3], vec![5], vec![2]]);
        assert!(cpus_for_slot(&[], 0, 2).is_empty());
    }

    /// The kernel's own account of this process's CPUs, as `taskset -p` shows it.
    #[test]
    fn the_allowed_cpus_are_those_the_kernel_lists() {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let list = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list")
            .trim();
        let listed: Vec<usize> = list
            .split(',')
            .flat_map(|range| {
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                let number = |n: &str| n.parse::<usize>().expect("a CPU number");
                number(first)..=number(last)
            })
            .collect();
        assert_eq!(allowed_cpus(), listed);
    }
}
