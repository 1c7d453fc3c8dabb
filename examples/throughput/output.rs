//! How figures are printed: percentiles, latency tables, CPU by thread,
//! and the state of the machine while a phase ran. Every phase prints its
//! own lines through these, so the format of docs/performance.md stays in
//! one place.

use crate::os::{cores, Threads, Usage};

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Nearest-rank percentile of unsorted values (100: the maximum).
pub fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_sorted(&s, p)
}

pub fn percentile_sorted(s: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn print_latency(what: &str, v: &mut [f64]) {
    if v.is_empty() {
        println!("      {what:<18} no requests measured");
        return;
    }
    v.sort_by(f64::total_cmp);
    println!(
        "      {what:<18} p50 {:>7.2}   p90 {:>7.2}   p99 {:>7.2}   p99.9 {:>7.2}   max {:>7.2}   ({} requests)",
        percentile_sorted(v, 50.0),
        percentile_sorted(v, 90.0),
        percentile_sorted(v, 99.0),
        percentile_sorted(v, 99.9),
        percentile_sorted(v, 100.0),
        v.len()
    );
}

/// Per second of the load, the probes' worst latency, and the stretches
/// of probes over 50 ms.
pub fn print_timeline(series: &[(f64, f64)]) {
    let secs = series.last().map_or(0, |s| s.0 as usize + 1);
    let mut worst = vec![(0.0f64, 0usize); secs];
    for &(t, l) in series {
        let w = &mut worst[t as usize];
        w.0 = w.0.max(l);
        w.1 += 1;
    }
    let line: Vec<String> = worst.iter().map(|w| format!("{:.0}", w.0)).collect();
    eprintln!("    worst latency (ms) per second of the load: {}", line.join(" "));
    // Stretches of probes over 50 ms, merged while less than 200 ms apart.
    let mut stretches: Vec<(f64, f64, f64, usize)> = Vec::new();
    for &(t, l) in series.iter().filter(|s| s.1 > 50.0) {
        match stretches.last_mut() {
            Some(s) if t - s.1 < 0.2 => {
                s.1 = t;
                s.2 = s.2.max(l);
                s.3 += 1;
            }
            _ => stretches.push((t, t, l, 1)),
        }
    }
    for (from, to, worst, n) in stretches {
        eprintln!("    over 50 ms: {n:>5} probes sent from {from:>7.3} s to {to:>7.3} s, worst {worst:>6.1} ms");
    }
}

/// `    CPU while consuming: N ns/record in all threads (group n, ...)`.
pub fn print_cpu_per_record(cpu: &Threads, n: usize) {
    let parts: Vec<String> =
        cpu.largest().iter().map(|(k, v)| format!("{k} {:.0}", *v * 1e9 / n.max(1) as f64)).collect();
    println!(
        "    CPU while consuming: {:.0} ns/record in all threads ({})",
        cpu.total() * 1e9 / n.max(1) as f64,
        parts.join(", ")
    );
}

/// `    CPU during the load: N cores in all threads (group n, ...)`.
pub fn print_cores(cpu: &Threads, secs: f64) {
    let parts: Vec<String> = cpu.largest().iter().map(|(k, v)| format!("{k} {:.2}", *v / secs)).collect();
    println!("    CPU during the load: {:.2} cores in all threads ({})", cpu.total() / secs, parts.join(", "));
}

/// The thread groups of a consuming phase, by who owns them: accord's own
/// threads, librdkafka's client threads, the mock broker, the async
/// runtime (HTTP and the bare loop), and the rest.
pub fn print_cores_by_owner(cpu: &Threads, secs: f64) {
    let accord = cpu.of(&["accord-"]);
    let mock = cpu.of(&["rdk:mock"]);
    let client = cpu.of(&["rdk:"]) - mock;
    let runtime = cpu.of(&["tokio-"]);
    let rest = cpu.total() - accord - mock - client - runtime;
    println!(
        "    cores busy while consuming: {:.2} (accord's threads {:.2}, librdkafka's client threads {:.2}, mock broker {:.2}, async runtime {:.2}, other {:.2})",
        cpu.total() / secs,
        accord / secs,
        client / secs,
        mock / secs,
        runtime / secs,
        rest.max(0.0) / secs
    );
}

/// Which threads waited for a core, and how busy the machine was: the
/// line that says whether a figure was taken on a quiet machine.
pub fn print_machine(u: &Usage, secs: f64, when: &str) {
    let mut w: Vec<(&String, &f64)> = u.waited.0.iter().filter(|(_, &v)| v / secs >= 0.01).collect();
    w.sort_by(|a, b| b.1.total_cmp(a.1));
    let w: Vec<String> = w.iter().map(|(k, v)| format!("{k} {:.2}", *v / secs)).collect();
    println!("    runnable but waiting for a core (s per s): {}", if w.is_empty() { "-".into() } else { w.join(", ") });
    let ours = u.cpu.total() / secs;
    let busy = u.machine / secs;
    println!(
        "    machine {when}: {:.2} of {} cores busy, {:.2} of them by other processes{}",
        busy,
        cores(),
        (busy - ours).max(0.0),
        if busy - ours > 0.2 {
            " (or kernel work not charged to a thread; above 0.2: not a quiet machine)"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(pct(&v, 50.0), 3.0);
        assert_eq!(pct(&v, 100.0), 5.0);
        assert_eq!(pct(&v, 0.0), 1.0);
        assert!(pct(&[], 50.0).is_nan());
        assert_eq!(mean(&v), 3.0);
    }
}
