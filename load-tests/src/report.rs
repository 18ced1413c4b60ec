//! What every scenario shares when it writes its figures: its own section
//! of `load-tests/RESULTS.md` (rewritten in place on every run, so the file
//! always holds the latest run of each scenario), percentiles and the
//! date of the run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where RESULTS.md and plots/ live: `load-tests/`, or
/// `$CONDUIT_RESULTS_DIR` when set, so a trial run (the test suite's tiny
/// runs) leaves the recorded figures alone.
pub(crate) fn root() -> PathBuf {
    match std::env::var_os(RESULTS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
    }
}

pub(crate) const RESULTS_DIR_ENV: &str = "CONDUIT_RESULTS_DIR";

/// The section `scenario` last wrote to RESULTS.md, if any.
pub(crate) fn section(scenario: &str) -> Option<String> {
    let current = std::fs::read_to_string(root().join("RESULTS.md")).ok()?;
    let (begin, end) = markers(scenario);
    let b = current.find(&begin)? + begin.len();
    let e = current[b..].find(&end)? + b;
    Some(current[b..e].trim().to_string())
}

/// Replaces the section of `scenario` in RESULTS.md (between its
/// `<!-- scenario:begin -->` and `<!-- scenario:end -->` markers), or
/// appends it when the scenario has not written one yet.
pub(crate) fn write_section(scenario: &str, body: &str) -> Result<(), String> {
    let path = root().join("RESULTS.md");
    let (begin, end) = markers(scenario);
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let section = format!("{begin}\n{}\n{end}\n", body.trim_end());
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{section}{}",
            &current[..b],
            current[e + end.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n\n{section}", current.trim_end()),
    };
    std::fs::write(&path, updated).map_err(|e| format!("{}: {e}", path.display()))
}

/// The lines around `scenario`'s section of RESULTS.md.
fn markers(scenario: &str) -> (String, String) {
    (
        format!("<!-- {scenario}:begin -->"),
        format!("<!-- {scenario}:end -->"),
    )
}

/// Writes `plots/NAME` (an SVG) beside RESULTS.md.
pub(crate) fn write_plot(name: &str, svg: &str) -> Result<(), String> {
    let dir = root().join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `q` quantile (0..=1) of ascending `sorted` (nearest rank); NaN
/// when there is nothing to rank.
pub(crate) fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub(crate) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

pub(crate) fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

/// The run's date, UTC, for the section headings.
pub(crate) fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`): other work on
/// the machine while a scenario ran.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine a run measured: CPU model and cores, memory, kernel.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|kb| kb.trim().trim_end_matches(" kB").parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {memory_gib:.1} GiB, Linux {}",
        kernel.trim()
    )
}

/// Every peer the scenarios run, by Debian package.
pub(crate) const PEERS: &[&str] = &[
    "haproxy",
    "nginx",
    "nghttp2-client",
    "prometheus",
    "victoria-metrics",
    "chromium",
    "chromium-driver",
];

/// The Debian package version of each of `packages`, or that it is not
/// installed (`victoria-metrics -version` prints nothing, so the package
/// database is the one source that names them all alike).
pub(crate) fn peer_versions(packages: &[&str]) -> Vec<String> {
    packages
        .iter()
        .map(|package| {
            let version = Command::new("dpkg-query")
                .args(["-W", "-f", "${Version}", package])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .filter(|v| !v.is_empty());
            format!(
                "{package} {}",
                version.as_deref().unwrap_or("(not installed)")
            )
        })
        .collect()
}

/// Proto labels of a report, in the order given (as a proxy sends them).
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Vec<conduit_api::proto::mesh::v1::Label> {
    pairs
        .iter()
        .map(|(n, v)| conduit_api::proto::mesh::v1::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::pct;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), 50.0);
        assert_eq!(pct(&v, 0.95), 95.0);
        assert_eq!(pct(&v, 1.0), 100.0);
        assert_eq!(pct(&v, 0.0), 1.0);
        assert!(pct(&[], 0.5).is_nan());
    }
}
