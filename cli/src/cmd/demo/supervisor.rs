//! Running the demo's processes and keeping them running.
//!
//! Every component is a child process with its output in its own log file.
//! A child that exits while the demo runs is restarted with backoff, and the
//! restart is reported, because a demo that silently loses a proxy would
//! show wrong numbers. Shutdown asks every child to stop (SIGTERM), then
//! kills what is left, so no process outlives the demo.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// How to start one process.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) log: PathBuf,
}

/// Something the demo should tell its user about.
#[derive(Debug)]
pub(crate) struct Restarted {
    pub(crate) name: String,
    pub(crate) status: String,
}

/// A child that ran this long is considered healthy again: its next exit
/// restarts it without delay.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(3);

pub(crate) struct Supervisor {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    restarts: mpsc::UnboundedSender<Restarted>,
}

impl Supervisor {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Restarted>) {
        let (restarts, events) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let supervisor = Self {
            tasks: JoinSet::new(),
            stop,
            restarts,
        };
        (supervisor, events)
    }

    /// Starts `spec` now and keeps it running until [`Supervisor::shutdown`].
    /// Fails only when the first start fails (missing binary, bad log path).
    pub(crate) fn start(&mut self, spec: Spec) -> anyhow::Result<()> {
        let child = spawn(&spec)?;
        let stop = self.stop.subscribe();
        let restarts = self.restarts.clone();
        self.tasks.spawn(keep_running(spec, child, stop, restarts));
        Ok(())
    }

    /// Stops every child and waits until all have exited.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

fn spawn(spec: &Spec) -> anyhow::Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("cannot open log file {}", spec.log.display()))?;
    Command::new(&spec.program)
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} ({})", spec.name, spec.program.display()))
}

async fn keep_running(
    spec: Spec,
    child: Child,
    mut stop: watch::Receiver<bool>,
    restarts: mpsc::UnboundedSender<Restarted>,
) {
    let mut child = Ok(child);
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        let status = match child.as_mut() {
            Ok(running) => tokio::select! {
                status = running.wait() => describe(status),
                _ = stopped(&mut stop) => {
                    terminate(running).await;
                    return;
                }
            },
            Err(e) => format!("could not be started again: {e:#}"),
        };
        let _ = restarts.send(Restarted {
            name: spec.name.clone(),
            status,
        });
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = Duration::from_millis(200);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        child = spawn(&spec);
    }
}

/// Resolves once shutdown was asked for.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("lost track of the process: {e}"),
    }
}

/// SIGTERM first so components flush (the store its WAL); SIGKILL after a
/// grace period.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
