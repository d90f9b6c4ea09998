//! The results: table rows, the printed table, machine facts and the JSON file.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::{json, Value};

use crate::stats::{fmt_ms, Summary};
use crate::Res;

/// One line of the table (and of the JSON's `rows`).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The scenario, e.g. `append 1 KiB`.
    pub scenario: String,
    /// What was measured, e.g. `gateway (S3)`.
    pub series: String,
    /// Latencies, when the row has any.
    pub latency: Option<Summary>,
    /// Throughput and its unit.
    pub throughput: Option<f64>,
    /// `ops/s`, `MiB/s`, ...
    pub unit: String,
    /// The comparison with this row's baseline, or a measured value (RSS).
    pub ratio: String,
    /// The target for this row, if it has one.
    pub target: String,
    /// Whether the target is met (`None` for rows without a target).
    pub met: Option<bool>,
}

impl Row {
    /// A row with latencies and a sequential rate in `unit`.
    pub fn new(scenario: &str, series: &str, latency: Option<Summary>) -> Self {
        Self {
            scenario: scenario.to_string(),
            series: series.to_string(),
            latency,
            throughput: None,
            unit: String::new(),
            ratio: String::new(),
            target: String::new(),
            met: None,
        }
    }

    /// Sets the throughput.
    pub fn rate(mut self, value: f64, unit: &str) -> Self {
        self.throughput = Some(value);
        self.unit = unit.to_string();
        self
    }

    /// Sets the comparison text.
    pub fn ratio(mut self, text: impl Into<String>) -> Self {
        self.ratio = text.into();
        self
    }

    /// Sets the target and whether it is met.
    pub fn target(mut self, text: impl Into<String>, met: Option<bool>) -> Self {
        self.target = text.into();
        self.met = met;
        self
    }
}

/// Renders rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "series",
        "n",
        "p50",
        "p95",
        "p99",
        "throughput",
        "ratio vs baseline",
        "target",
        "met",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (n, p50, p95, p99) = match &r.latency {
                Some(s) => (
                    s.n.to_string(),
                    fmt_ms(s.p50_ms),
                    fmt_ms(s.p95_ms),
                    fmt_ms(s.p99_ms),
                ),
                None => ("".into(), "".into(), "".into(), "".into()),
            };
            let throughput = r
                .throughput
                .map(|t| format!("{} {}", fmt_rate(t), r.unit))
                .unwrap_or_default();
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            vec![
                r.scenario.clone(),
                r.series.clone(),
                n,
                p50,
                p95,
                p99,
                throughput,
                r.ratio.clone(),
                r.target.clone(),
                met.to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<String>| {
        let padded: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Facts about the machine and the build, for the JSON.
pub fn machine(seaweedfs_version: &str) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let git_commit = run("git", &["rev-parse", "HEAD"]);
    let dirty =
        run("git", &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_mib": mem_kib / 1024,
        "cpu_model": cpu_model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).ok(),
        "seaweedfs_version": seaweedfs_version,
        "git_commit": git_commit,
        "git_dirty": dirty,
        "rustc": run("rustc", &["--version"]),
    })
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `YYYYMMDDTHHMMSSZ` for now, in UTC.
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes `<dir>/<stamp>.json` and `<dir>/latest.json`; returns the first.
pub fn write_json(dir: &Path, stamp: &str, value: &Value) -> Res<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_string_pretty(value)? + "\n";
    let path = dir.join(format!("{stamp}.json"));
    std::fs::write(&path, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
