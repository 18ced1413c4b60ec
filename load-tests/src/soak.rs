//! `conduit-load-tests soak`: the demo mesh (`conduit demo`, every
//! component a real process) at a steady rate for a long time, to show
//! what short benchmarks cannot: memory that creeps, CPU that grows with
//! the store's history, and errors nobody injected.
//!
//! Every component's RSS and CPU is sampled from /proc at a fixed
//! interval; a component is found by where its output goes (the demo
//! sends each one's stdout to `logs/<name>.log`), so a restarted process
//! keeps its line. Errors are counted from four places, each of which
//! would stay at zero in a healthy mesh: requests that failed at a
//! Deployment with no injected failures (voting's `--failure-rate` is the
//! only injection, and web fails exactly when voting or emoji does),
//! restarts the demo's supervisor reports, and ERROR lines in the
//! components' logs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conduit_api::json::{Stat, StatRow};

use crate::args::Flags;
use crate::proxy::peers::{self, cpu_seconds, rss_kib};
use crate::scratch::ScratchDir;
use crate::{plot, report};

const USAGE: &str = "usage: conduit-load-tests soak [--seconds S] [--rps R] [--sample-every S]
  --seconds S        how long the mesh runs under load once up (1800)
  --rps R            requests per second the demo's traffic generator sends (1000)
  --sample-every S   seconds between samples of every process (10)";

/// Port offsets tried in turn. The demo's pod ports (47 000 up) sit in
/// Linux's ephemeral range below an offset of 14 000, where a busy machine's
/// outgoing connections may hold one; from 14 000 up the demo's own tests
/// use every hundred, and the fifties between them are free unless such a
/// test runs at the same time (then the next offset is tried).
const PORT_OFFSETS: &[u16] = &[
    13_700, 13_800, 13_900, 14_050, 14_150, 14_250, 14_350, 14_450, 14_550, 14_650,
];
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Voting's injected failure share (the demo's default).
const FAILURE_RATE: &str = "0.1";
/// Growth of a component's RSS from the first to the last quarter of the
/// run that still counts as flat.
const FLAT_GROWTH: f64 = 0.10;

struct Options {
    seconds: u64,
    rps: u32,
    sample_every: u64,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seconds: 1800,
        rps: 1000,
        sample_every: 10,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--seconds" => o.seconds = flags.number(flag, 5..=86_400)?,
            "--rps" => o.rps = flags.number(flag, 1..=20_000)?,
            "--sample-every" => o.sample_every = flags.number(flag, 1..=600)?,
            _ => return Err(flags.unknown(flag)),
        }
    }
    Ok(o)
}

/// One component's samples: (seconds since load began, RSS MiB, CPU
/// cores over the interval before).
#[derive(Default)]
struct Trace {
    rss_mib: Vec<(f64, f64)>,
    cores: Vec<(f64, f64)>,
    /// The last CPU reading, per pid (a restart starts a new count).
    last_cpu: Option<(u32, f64, Instant)>,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let dir = ScratchDir::new("bench-soak")?;
    let load_before = report::loadavg();
    let mut demo = Demo::start(dir.path(), &o)?;
    eprintln!(
        "soak: the demo mesh is up (port offset {}); {} s at {} RPS, sampling every {} s",
        demo.offset, o.seconds, o.rps, o.sample_every
    );
    let started = Instant::now();
    let mut traces: BTreeMap<String, Trace> = BTreeMap::new();
    let mut samples = 0usize;
    while started.elapsed() < Duration::from_secs(o.seconds) {
        if let Some(status) = demo.exited()? {
            return Err(format!(
                "conduit demo exited ({status}) during the soak:\n{}",
                demo.stderr()
            ));
        }
        sample(&demo.log_dir(), started, &mut traces);
        samples += 1;
        let next = Duration::from_secs(o.sample_every * samples as u64);
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    sample(&demo.log_dir(), started, &mut traces);
    let elapsed = started.elapsed().as_secs();
    let stat = demo.stat(elapsed)?;
    let errors = Errors::count(&demo, &stat)?;
    drop(demo);
    write(&o, &traces, &errors, &stat, &load_before)
}

/// The running demo: its process, its output, where its logs are.
struct Demo {
    child: Child,
    offset: u16,
    data: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    fn start(dir: &Path, o: &Options) -> Result<Self, String> {
        let conduit = peers::binary("conduit")?;
        for &offset in PORT_OFFSETS {
            let data = dir.join(format!("demo-{offset}"));
            // The supervisor stops the demo by itself should this process die.
            let limit = o.seconds + READY_TIMEOUT.as_secs() + 60;
            let mut child = Command::new(&conduit)
                .args(["demo", "--duration", &format!("{limit}s")])
                .args(["--rps", &o.rps.to_string()])
                .args(["--failure-rate", FAILURE_RATE])
                .args(["--port-offset", &offset.to_string()])
                .arg("--data-dir")
                .arg(&data)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("{}: {e}", conduit.display()))?;
            let stdout = collect(child.stdout.take());
            let stderr = collect(child.stderr.take());
            let mut demo = Self {
                child,
                offset,
                data,
                stderr,
            };
            let deadline = Instant::now() + READY_TIMEOUT;
            while Instant::now() < deadline {
                if stdout.lock().unwrap().contains("Conduit demo is running") {
                    return Ok(demo);
                }
                if let Some(status) = demo.exited()? {
                    if demo.stderr().contains("is not available") {
                        break;
                    }
                    return Err(format!(
                        "conduit demo exited ({status}) before it was ready:\n{}",
                        demo.stderr()
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if demo.exited()?.is_none() {
                return Err(format!(
                    "conduit demo not ready in {} s:\n{}",
                    READY_TIMEOUT.as_secs(),
                    demo.stderr()
                ));
            }
        }
        Err(format!(
            "every port offset tried was taken: {PORT_OFFSETS:?}"
        ))
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>, String> {
        self.child.try_wait().map_err(|e| e.to_string())
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn log_dir(&self) -> PathBuf {
        self.data.join("logs")
    }

    /// `conduit stat deploy -n demo` over the last `seconds`, as a user
    /// of the demo would ask it.
    fn stat(&self, seconds: u64) -> Result<Stat, String> {
        let out = Command::new(peers::binary("conduit")?)
            .args(["stat", "deploy", "-n", "demo", "-o", "json"])
            .args(["--since", &format!("{seconds}s")])
            .args(["--api-addr", &format!("127.0.0.1:{}", 50_751 + self.offset)])
            .arg("--api-token-file")
            .arg(self.data.join("api-token"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "conduit stat failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("conduit stat -o json: {e}"))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

fn collect(pipe: Option<impl std::io::Read + Send + 'static>) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    if let Some(pipe) = pipe {
        let sink = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
    }
    text
}

/// Every process whose stdout goes to a log in `log_dir`, by the log's
/// name: the demo's components, whatever their pids are now.
fn components(log_dir: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(out) = std::fs::read_link(entry.path().join("fd/1")) else {
            continue;
        };
        if out.parent() == Some(log_dir)
            && let Some(name) = out.file_stem()
        {
            found.push((name.to_string_lossy().into_owned(), pid));
        }
    }
    found
}

fn sample(log_dir: &Path, started: Instant, traces: &mut BTreeMap<String, Trace>) {
    let t = started.elapsed().as_secs_f64();
    for (name, pid) in components(log_dir) {
        let (Ok((rss, _)), Ok(cpu)) = (rss_kib(pid), cpu_seconds(pid)) else {
            continue;
        };
        let trace = traces.entry(name).or_default();
        trace.rss_mib.push((t, rss as f64 / 1024.0));
        let now = Instant::now();
        if let Some((last_pid, last_cpu, at)) = trace.last_cpu
            && last_pid == pid
        {
            let wall = now.duration_since(at).as_secs_f64();
            trace.cores.push((t, (cpu - last_cpu) / wall.max(1e-3)));
        }
        trace.last_cpu = Some((pid, cpu, now));
    }
}

/// Everything that went wrong that nobody asked for.
struct Errors {
    /// Failed requests at Deployments where no failure was injected or
    /// explained by one (see the module's docs).
    unexpected_failures: u64,
    injected_failures: u64,
    restarts: Vec<String>,
    /// ERROR lines per component log, and the first of them.
    log_errors: BTreeMap<String, (u64, String)>,
}

impl Errors {
    fn count(demo: &Demo, stat: &Stat) -> Result<Self, String> {
        let failed = |name: &str| -> u64 {
            stat.rows
                .iter()
                .filter(|r: &&StatRow| r.name == name)
                .filter_map(|r| r.metrics.as_ref())
                .map(|m| m.failure_count)
                .sum()
        };
        let injected = failed("voting");
        // web fails a request exactly when the voting or emoji call it
        // makes fails.
        let web_unexplained = failed("web").saturating_sub(injected + failed("emoji"));
        let elsewhere: u64 = stat
            .rows
            .iter()
            .filter(|r| !["voting", "web"].contains(&r.name.as_str()))
            .filter_map(|r| r.metrics.as_ref())
            .map(|m| m.failure_count)
            .sum();
        let restarts = demo
            .stderr()
            .lines()
            .filter(|l| l.starts_with("! "))
            .map(String::from)
            .collect();
        Ok(Self {
            unexpected_failures: web_unexplained + elsewhere,
            injected_failures: injected,
            restarts,
            log_errors: log_errors(&demo.log_dir())?,
        })
    }

    fn total(&self) -> u64 {
        self.unexpected_failures
            + self.restarts.len() as u64
            + self.log_errors.values().map(|(n, _)| n).sum::<u64>()
    }
}

fn log_errors(log_dir: &Path) -> Result<BTreeMap<String, (u64, String)>, String> {
    let mut found = BTreeMap::new();
    let entries = std::fs::read_dir(log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let errors: Vec<String> = text
            .lines()
            .map(without_colours)
            .filter(|l| l.contains(" ERROR "))
            .collect();
        if let Some(first) = errors.first() {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            found.insert(name.into_owned(), (errors.len() as u64, first.clone()));
        }
    }
    Ok(found)
}

/// `line` without terminal colour sequences (`ESC [ … m`), which some
/// components write to their logs around the level.
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
            continue;
        }
        out.push(c);
    }
    out
}

/// RSS in the first and the last quarter of the run (medians), and
/// whether it stayed within [`FLAT_GROWTH`].
fn rss_drift(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let quarter = points.len() / 4;
    if quarter == 0 {
        return None;
    }
    let median =
        |p: &[(f64, f64)]| report::pct(&report::sorted(p.iter().map(|x| x.1).collect()), 0.5);
    Some((
        median(&points[..quarter]),
        median(&points[points.len() - quarter..]),
    ))
}

fn write(
    o: &Options,
    traces: &BTreeMap<String, Trace>,
    errors: &Errors,
    stat: &Stat,
    load_before: &str,
) -> Result<(), String> {
    if traces.is_empty() {
        return Err("no demo process was ever found under its log directory".into());
    }
    let rss: Vec<(String, Vec<(f64, f64)>)> = traces
        .iter()
        .map(|(n, t)| (n.clone(), t.rss_mib.clone()))
        .collect();
    let cpu: Vec<(String, Vec<(f64, f64)>)> = traces
        .iter()
        .map(|(n, t)| (n.clone(), t.cores.clone()))
        .collect();
    report::write_plot(
        "soak-rss.svg",
        &plot::over_time("RSS of every demo process during the soak", "MiB", &rss),
    )?;
    report::write_plot(
        "soak-cpu.svg",
        &plot::over_time("CPU of every demo process during the soak", "cores", &cpu),
    )?;
    let mut md = format!(
        "## soak: the demo mesh under steady load ({})\n\n\
         Command: `cargo xtask bench soak` (= `cargo run --release -p conduit-load-tests -- soak --seconds {} --rps {} --sample-every {}`). \
         `conduit demo --rps {} --failure-rate {FAILURE_RATE}` (every component a real process on loopback, voting failing 10 % of Vote calls on purpose) \
         runs for {:.1} min once up; every process's RSS and CPU is sampled from /proc every {} s. Machine: {}. Load average (1, 5, 15 min) {load_before} before, {} after.\n\n\
         Goals: flat memory (RSS of the last quarter within {:.0} % of the first quarter's) and zero unexpected errors.\n\n\
         ![RSS over time](plots/soak-rss.svg)\n![CPU over time](plots/soak-cpu.svg)\n\n\
         | process | RSS first quarter | RSS last quarter | growth | flat | mean CPU (cores) | max CPU |\n\
         |---|---:|---:|---:|---|---:|---:|\n",
        report::today(),
        o.seconds,
        o.rps,
        o.sample_every,
        o.rps,
        o.seconds as f64 / 60.0,
        o.sample_every,
        report::machine(),
        report::loadavg(),
        FLAT_GROWTH * 100.0,
    );
    let mut growing = Vec::new();
    for (name, t) in traces {
        let cores: Vec<f64> = t.cores.iter().map(|c| c.1).collect();
        let mean = cores.iter().sum::<f64>() / cores.len().max(1) as f64;
        let max = cores.iter().copied().fold(0.0, f64::max);
        let (first, last, growth, flat) = match rss_drift(&t.rss_mib) {
            Some((first, last)) => {
                let growth = last / first - 1.0;
                let flat = growth <= FLAT_GROWTH;
                if !flat {
                    growing.push(name.as_str());
                }
                (
                    format!("{first:.1} MiB"),
                    format!("{last:.1} MiB"),
                    format!("{:+.1} %", growth * 100.0),
                    if flat { "yes" } else { "**no**" },
                )
            }
            None => ("–".into(), "–".into(), "–".into(), "too few samples"),
        };
        md.push_str(&format!(
            "| {name} | {first} | {last} | {growth} | {flat} | {mean:.3} | {max:.3} |\n"
        ));
    }
    md.push_str(&errors_table(errors, stat));
    md.push_str(&format!(
        "\nMemory: {}. Errors beyond the injected ones: **{}** (goal 0).\n",
        if growing.is_empty() {
            "flat for every process".to_string()
        } else {
            format!("**grew** for {}", growing.join(", "))
        },
        errors.total()
    ));
    report::write_section("soak", &md)
}

fn errors_table(errors: &Errors, stat: &Stat) -> String {
    let mut md = format!(
        "\nRequests over the soak (`conduit stat deploy -n demo --since …`, inbound, {} to {}):\n\n\
         | Deployment | requests | failed | success rate |\n|---|---:|---:|---:|\n",
        stat.span.start, stat.span.end
    );
    for row in &stat.rows {
        let Some(m) = &row.metrics else {
            md.push_str(&format!("| {} | 0 | 0 | – |\n", row.name));
            continue;
        };
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} % |\n",
            row.name,
            m.total(),
            m.failure_count,
            m.success_rate * 100.0
        ));
    }
    md.push_str(&format!(
        "\n| error | count |\n|---|---:|\n\
         | voting's injected failures (expected) | {} |\n\
         | failed requests no injection explains | {} |\n\
         | component restarts | {} |\n",
        errors.injected_failures,
        errors.unexpected_failures,
        errors.restarts.len(),
    ));
    for (name, (n, first)) in &errors.log_errors {
        md.push_str(&format!(
            "| ERROR lines in {name}.log (first: `{}`) | {n} |\n",
            first
                .chars()
                .take(160)
                .collect::<String>()
                .replace('|', "\\|")
        ));
    }
    if errors.log_errors.is_empty() {
        md.push_str("| ERROR lines in the components' logs | 0 |\n");
    }
    md
}
