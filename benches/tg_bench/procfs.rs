//! What `/proc` says about a process: memory high-water marks and CPU time.

use crate::{err, Res};

/// A field of `/proc/<pid>/status` in KiB (e.g. `VmHWM`, `VmRSS`).
pub fn status_kib(pid: u32, field: &str) -> Res<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .ok_or_else(|| err(format!("no {field} in /proc/{pid}/status")))
}

/// User plus system CPU seconds a process has used (`/proc/<pid>/stat`,
/// assuming the usual 100 clock ticks per second).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields start after its closing ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds of this process (the benchmark itself).
pub fn self_cpu_secs() -> Option<f64> {
    cpu_secs(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS").unwrap() > 0);
        assert!(cpu_secs(me).is_some());
    }
}
