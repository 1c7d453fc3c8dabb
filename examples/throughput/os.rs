//! What the operating system tells about this process and the machine:
//! on-CPU and run-queue time per thread (`/proc/self/task/*/schedstat`),
//! this thread's CPU clock, RSS (`/proc/self/status`), the machine's busy
//! time (`/proc/stat`) and the CPU model. Every reader returns 0 (or an
//! empty map) where the file is missing, so figures degrade, never fail.

use std::collections::BTreeMap;
use std::time::Instant;

/// Per thread (id, name group), nanoseconds of one `schedstat` field.
pub type ThreadTimes = BTreeMap<(u64, String), u64>;

/// On-CPU nanoseconds of this process's threads.
pub fn thread_cpu() -> ThreadTimes {
    thread_sched(0)
}

/// Nanoseconds each thread of this process spent runnable but waiting
/// for a core (the run queue).
pub fn thread_waited() -> ThreadTimes {
    thread_sched(1)
}

/// The name a thread's figures are grouped under: digits at the end are
/// dropped, so librdkafka's broker threads and tokio's workers group, but
/// accord's judging threads (`accord-judge-N`) stay apart, since how the
/// streams are spread over them is part of what is measured.
pub fn thread_group(comm: &str) -> String {
    let comm = comm.trim();
    if comm.starts_with("accord-judge-") {
        return comm.to_string();
    }
    comm.trim_end_matches(|c: char| c.is_ascii_digit()).to_string()
}

/// Field `field` of each thread's `schedstat`: 0 on-CPU ns, 1 run-queue ns.
fn thread_sched(field: usize) -> ThreadTimes {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for e in dir.flatten() {
        let tid: u64 = e.file_name().to_string_lossy().parse().unwrap_or(0);
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(field).and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        out.insert((tid, thread_group(&comm)), ns);
    }
    out
}

/// CPU seconds by thread group, summed over the measured intervals.
#[derive(Default, Clone)]
pub struct Threads(pub BTreeMap<String, f64>);

impl Threads {
    /// Adds what each thread did between two readings (threads that
    /// started meanwhile count from zero).
    pub fn add_delta(&mut self, before: &ThreadTimes, after: &ThreadTimes) {
        for (k, &ns) in after {
            let d = ns.saturating_sub(before.get(k).copied().unwrap_or(0));
            *self.0.entry(k.1.clone()).or_default() += d as f64 / 1e9;
        }
    }

    pub fn total(&self) -> f64 {
        // From +0.0: an empty float sum is -0.0, printed "-0.00".
        self.0.values().fold(0.0, |a, b| a + b)
    }

    /// Seconds of the groups whose name starts with one of `prefixes`.
    pub fn of(&self, prefixes: &[&str]) -> f64 {
        self.0.iter().filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p))).fold(0.0, |a, (_, v)| a + v)
    }

    /// The groups with at least 1% of the total, largest first.
    pub fn largest(&self) -> Vec<(&str, f64)> {
        let total = self.total();
        let mut by: Vec<(&str, f64)> =
            self.0.iter().filter(|(_, &v)| v >= total * 0.01).map(|(k, &v)| (k.as_str(), v)).collect();
        by.sort_by(|a, b| b.1.total_cmp(&a.1));
        by
    }
}

/// On-CPU and run-queue time of this process's threads, and the
/// machine's busy time, at one instant.
pub struct Snapshot {
    pub cpu: ThreadTimes,
    pub waited: ThreadTimes,
    pub machine: f64,
}

impl Snapshot {
    pub fn take() -> Snapshot {
        Snapshot { cpu: thread_cpu(), waited: thread_waited(), machine: machine_busy_secs() }
    }
}

/// What the process and the machine did between two snapshots.
#[derive(Default, Clone)]
pub struct Usage {
    /// On-CPU seconds per thread group of this process.
    pub cpu: Threads,
    /// Run-queue seconds per thread group.
    pub waited: Threads,
    /// Busy CPU seconds of the whole machine.
    pub machine: f64,
}

impl Usage {
    pub fn between(before: &Snapshot, after: &Snapshot) -> Usage {
        let mut u = Usage::default();
        u.cpu.add_delta(&before.cpu, &after.cpu);
        u.waited.add_delta(&before.waited, &after.waited);
        u.machine = after.machine - before.machine;
        u
    }
}

/// Busy CPU seconds of the whole machine so far (`/proc/stat`), or 0.
pub fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(cpu) = stat.lines().next() else { return 0.0 };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest...: guest
    // time is already in user, steal is not this guest's.
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| v.get(i)).sum();
    // USER_HZ is 100 on Linux.
    busy as f64 / 100.0
}

/// Wall and on-CPU seconds of one measurement.
#[derive(Clone, Copy)]
pub struct Secs {
    pub wall: f64,
    pub cpu: f64,
}

/// The best (smallest) of several measurements, each clock on its own.
pub struct Best {
    pub wall: f64,
    pub cpu: f64,
}

impl Default for Best {
    fn default() -> Self {
        Best { wall: f64::MAX, cpu: f64::MAX }
    }
}

impl Best {
    pub fn add(&mut self, t: Secs) {
        self.wall = self.wall.min(t.wall);
        self.cpu = self.cpu.min(t.cpu);
    }
}

/// Runs `f`, timed on the wall clock and on this thread's CPU clock.
pub fn timed<T>(f: impl FnOnce() -> T) -> (Secs, T) {
    let (c0, t0) = (thread_cpu_ns(), Instant::now());
    let out = f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns().saturating_sub(c0) as f64 / 1e9;
    // Without schedstat, fall back to the wall clock.
    (Secs { wall, cpu: if cpu > 0.0 { cpu } else { wall } }, out)
}

/// This thread's time on a CPU, in nanoseconds (0 if unavailable).
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`), or 0.
pub fn read_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS where the kernel allows it, so each
/// phase reports its own peak.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_kib() -> u64 {
    read_status("VmHWM:")
}

pub fn rss_kib() -> u64 {
    read_status("VmRSS:")
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The load average over the last minute (`/proc/loadavg`), if known.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

pub fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "DEBUG: figures are meaningless, use --release"
    } else {
        "release"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging_threads_keep_their_number() {
        assert_eq!(thread_group("accord-judge-1\n"), "accord-judge-1");
        assert_eq!(thread_group("rdk:broker12"), "rdk:broker");
        assert_eq!(thread_group("accord-kafka"), "accord-kafka");
    }

    #[test]
    fn deltas_group_by_name() {
        let before: ThreadTimes = [((1, "a".to_string()), 100), ((2, "a".to_string()), 50)].into();
        let after: ThreadTimes =
            [((1, "a".to_string()), 1_000_000_100), ((2, "a".to_string()), 50), ((3, "b".to_string()), 5e8 as u64)]
                .into();
        let mut t = Threads::default();
        t.add_delta(&before, &after);
        assert_eq!(t.0["a"], 1.0);
        assert_eq!(t.0["b"], 0.5);
        assert_eq!(t.largest()[0].0, "a");
        assert_eq!(t.of(&["b", "c"]), 0.5);
    }
}
