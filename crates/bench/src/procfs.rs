//! Memory and CPU of a process tree, read from Linux `/proc` (proc(5)).
//!
//! RSS is `VmRSS` of `/proc/PID/status` (kB), summed over the process and all its
//! descendants (found through `/proc/PID/task/TID/children`). CPU time is `utime + stime`
//! (fields 14 and 15 of `/proc/PID/stat`, in clock ticks of `USER_HZ` = 100 per second on
//! Linux), summed the same way.

use serde::Serialize;
use std::collections::BTreeSet;

/// Linux reports `/proc/PID/stat` times in `USER_HZ`, which is 100 on every architecture's ABI.
const USER_HZ: f64 = 100.0;

/// One reading of a process tree.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TreeSample {
    /// Process ids read (the root first).
    pub pids: Vec<u32>,
    /// Sum of `VmRSS` over the tree, kB.
    pub rss_kb: u64,
    /// Sum of user + system CPU time over the tree, seconds.
    pub cpu_seconds: f64,
}

/// The root and every descendant of `root` that is alive now.
pub fn tree(root: u32) -> Vec<u32> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        order.push(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                stack.extend(text.split_whitespace().filter_map(|s| s.parse::<u32>().ok()));
            }
        }
    }
    order
}

/// `VmRSS` in kB from the text of `/proc/PID/status`.
pub fn parse_vmrss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`.
///
/// The second field (`comm`) is in parentheses and may contain spaces, so fields are counted
/// from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_whitespace();
    // After `comm`: field 3 (state) is index 0; utime is field 14 → index 11, stime index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Reads RSS and CPU time of `root` and its descendants. Processes that vanish mid-read count 0.
pub fn sample(root: u32) -> TreeSample {
    let pids = tree(root);
    let mut rss_kb = 0;
    let mut ticks = 0;
    for pid in &pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            rss_kb += parse_vmrss_kb(&s).unwrap_or(0);
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            ticks += parse_cpu_ticks(&s).unwrap_or(0);
        }
    }
    TreeSample { pids, rss_kb, cpu_seconds: ticks as f64 / USER_HZ }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_rss() {
        let s = "Name:\tnginx\nVmPeak:\t  1000 kB\nVmRSS:\t    4242 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vmrss_kb(s), Some(4242));
        assert_eq!(parse_vmrss_kb("Name:\tx\n"), None);
    }

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let stat = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn samples_own_process() {
        let s = sample(std::process::id());
        assert_eq!(s.pids.first().copied(), Some(std::process::id()));
        assert!(s.rss_kb > 0);
    }
}
