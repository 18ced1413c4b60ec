//! `conduit-load-tests all [--quick | --tiny]`: every scenario in turn,
//! each in its own process (a scenario that crashes or pins itself to
//! cores cannot disturb the next), then a summary section naming the
//! machine, every peer's version, each scenario's exact command, its time
//! and whether it wrote its figures.
//!
//! Three sizes of the same runs: the full one records the figures the
//! README quotes (within an hour, most of it the soak); `--quick` keeps
//! every comparison with its peer but shortens every phase (within five
//! minutes); `--tiny` only proves each scenario still runs end to end and
//! writes its section (seconds each), which is what the test suite runs so
//! that the harness cannot rot between benchmark runs.

use std::process::Command;
use std::time::Instant;

use crate::args::Flags;
use crate::report;

const USAGE: &str =
    "usage: conduit-load-tests all [--quick | --tiny] [--only NAME,NAME...] [--list]";

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Size {
    Full,
    Quick,
    Tiny,
}

impl Size {
    fn name(self) -> &'static str {
        match self {
            Size::Full => "full",
            Size::Quick => "quick",
            Size::Tiny => "tiny",
        }
    }
}

/// A scenario and its arguments at each size.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    full: &'static [&'static str],
    quick: &'static [&'static str],
    tiny: &'static [&'static str],
}

impl Scenario {
    fn args(&self, size: Size) -> &'static [&'static str] {
        match size {
            Size::Full => self.full,
            Size::Quick => self.quick,
            Size::Tiny => self.tiny,
        }
    }
}

/// Every scenario, in the order `all` runs them: the proxy's first (they
/// need the quietest machine), the soak last (the longest).
pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "proxy",
        full: &[],
        quick: &["--seconds", "2", "--rounds", "1"],
        tiny: &["--rate", "100", "--seconds", "1", "--rounds", "1"],
    },
    Scenario {
        name: "h2",
        full: &[],
        quick: &["--seconds", "2", "--rounds", "1"],
        tiny: &["--rate", "100", "--seconds", "1", "--rounds", "1"],
    },
    Scenario {
        name: "mtls",
        full: &[],
        quick: &["--seconds", "2", "--rounds", "1"],
        tiny: &["--rate", "100", "--seconds", "1", "--rounds", "1"],
    },
    Scenario {
        name: "policy",
        full: &[],
        quick: &["--seconds", "2", "--rounds", "1"],
        tiny: &["--rate", "100", "--seconds", "1", "--rounds", "1"],
    },
    Scenario {
        name: "recorder",
        full: &[],
        quick: &["--seconds", "2", "--rounds", "4"],
        // Its own check wants failures past the recorder's budget (20 a
        // second): one request in 64 fails, so short runs need 2000 RPS.
        tiny: &["--rate", "2000", "--seconds", "1", "--rounds", "2"],
    },
    Scenario {
        name: "routes",
        full: &[],
        quick: &["--requests", "200000"],
        tiny: &["--requests", "10000"],
    },
    Scenario {
        name: "store",
        full: &[],
        quick: &[
            "--series",
            "2000",
            "--hours",
            "3.5",
            "--deployments",
            "100",
            "--runs",
            "3",
            "--tap-events",
            "200000",
        ],
        // Fewer series would put an hour of samples in one request, and
        // Prometheus refuses what lands more than an hour behind its head.
        tiny: &[
            "--series",
            "2000",
            "--hours",
            "3.5",
            "--deployments",
            "10",
            "--runs",
            "1",
            "--tap-events",
            "1000",
            "--settle-seconds",
            "0",
        ],
    },
    Scenario {
        name: "stat",
        full: &[],
        quick: &["200", "5"],
        tiny: &["10", "2"],
    },
    Scenario {
        name: "fleet",
        full: &[],
        quick: &["--proxies", "200", "--seconds", "10", "--rates", "20,40"],
        tiny: &["--proxies", "10", "--seconds", "2", "--rates", "20"],
    },
    Scenario {
        name: "sizing",
        full: &["--proxies", "100,250,500,1000,2000", "--seconds", "30"],
        quick: &["--proxies", "50,100", "--seconds", "10"],
        tiny: &["--proxies", "5", "--seconds", "2"],
    },
    Scenario {
        name: "control",
        full: &[],
        quick: &["--rounds", "5"],
        tiny: &["--subscribers", "10", "--rounds", "2"],
    },
    Scenario {
        name: "ui",
        full: &[],
        quick: &["3"],
        tiny: &["2"],
    },
    Scenario {
        name: "soak",
        full: &[],
        quick: &["--seconds", "60"],
        tiny: &["--seconds", "10", "--rps", "50", "--sample-every", "2"],
    },
];

struct Options {
    size: Size,
    only: Option<Vec<String>>,
}

fn options(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        size: Size::Full,
        only: None,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--quick" => o.size = Size::Quick,
            "--tiny" => o.size = Size::Tiny,
            "--list" => {
                for s in SCENARIOS {
                    println!("{}", s.name);
                }
                return Ok(None);
            }
            "--only" => {
                let names: Vec<String> = flags.value(flag)?.split(',').map(String::from).collect();
                if let Some(n) = names
                    .iter()
                    .find(|n| !SCENARIOS.iter().any(|s| s.name == n.as_str()))
                {
                    return Err(format!("--only: no scenario {n:?} (see --list)"));
                }
                o.only = Some(names);
            }
            _ => return Err(flags.unknown(flag)),
        }
    }
    Ok(Some(o))
}

/// How one scenario's run ended.
struct Outcome {
    scenario: &'static Scenario,
    seconds: f64,
    /// `None` when it ran and wrote its section; otherwise why not.
    failure: Option<String>,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let Some(o) = options(args)? else {
        return Ok(());
    };
    let root = report::root();
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let load_before = report::loadavg();
    let started = Instant::now();
    let chosen = SCENARIOS.iter().filter(|s| {
        o.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == s.name))
    });
    let outcomes: Vec<Outcome> = chosen.map(|s| run_one(&me, s, o.size)).collect();
    summarise(&o, &outcomes, &load_before, started.elapsed().as_secs_f64())?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|f| format!("{}: {f}", r.scenario.name))
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} of {} scenarios failed:\n  {}",
        failed.len(),
        outcomes.len(),
        failed.join("\n  ")
    ))
}

fn run_one(me: &std::path::Path, s: &'static Scenario, size: Size) -> Outcome {
    eprintln!("== {} ({}): {}", s.name, size.name(), command(s, size));
    let before = report::section(s.name);
    let started = Instant::now();
    let status = Command::new(me).arg(s.name).args(s.args(size)).status();
    let seconds = started.elapsed().as_secs_f64();
    let failure = match status {
        Err(e) => Some(format!("could not start: {e}")),
        Ok(st) if !st.success() => Some(format!("exited with {st}")),
        Ok(_) => match report::section(s.name) {
            None => Some("wrote no section to RESULTS.md".into()),
            Some(after) if Some(&after) == before.as_ref() => {
                Some("left its RESULTS.md section unchanged".into())
            }
            Some(_) => None,
        },
    };
    eprintln!(
        "== {} {} in {seconds:.0} s",
        s.name,
        failure.as_deref().unwrap_or("done")
    );
    Outcome {
        scenario: s,
        seconds,
        failure,
    }
}

fn command(s: &Scenario, size: Size) -> String {
    let mut c = format!("conduit-load-tests {}", s.name);
    for a in s.args(size) {
        c.push(' ');
        c.push_str(a);
    }
    c
}

fn summarise(
    o: &Options,
    outcomes: &[Outcome],
    load_before: &str,
    total: f64,
) -> Result<(), String> {
    let flag = match o.size {
        Size::Full => String::new(),
        size => format!(" --{}", size.name()),
    };
    let mut md = format!(
        "## all: every scenario in one run ({}, {})\n\n\
         Command: `cargo xtask bench all{flag}` (release binaries; each scenario in its own process). \
         {} scenarios in {:.1} min; load average (1, 5, 15 min) {load_before} before, {} after.\n\n\
         Machine: {}.\n\nPeers: {}.\n\n\
         | scenario | command | time | figures |\n|---|---|---:|---|\n",
        report::today(),
        o.size.name(),
        outcomes.len(),
        total / 60.0,
        report::loadavg(),
        report::machine(),
        report::peer_versions(report::PEERS).join("; "),
    );
    for r in outcomes {
        md.push_str(&format!(
            "| {} | `{}` | {:.0} s | {} |\n",
            r.scenario.name,
            command(r.scenario, o.size),
            r.seconds,
            r.failure
                .as_deref()
                .map_or_else(|| "written below".to_string(), |f| format!("**{f}**")),
        ));
    }
    report::write_section("all", &md)
}
