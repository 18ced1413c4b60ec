//! `conduit top deploy/NAME`: the busiest paths of a Deployment, as a live
//! terminal table (ratatui) refreshed each second until `q`; `--once`
//! prints one snapshot for scripts.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conduit_api::json::Top;
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::public::v1::TopRequest;
use crossterm::event::{self, Event, KeyCode, KeyModifiers};
use futures_util::StreamExt;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Row, Table};

use crate::api;
use crate::args::TopArgs;
use crate::cmd::{block_on, required_name};
use crate::output::{self, Format, latency, outln, print_json, print_json_line, rps, success};

/// `--once` collects this long before printing, so the snapshot covers a
/// couple of the controller's one-second updates.
const ONCE_AFTER: Duration = Duration::from_secs(2);

pub(crate) fn run(args: TopArgs) -> anyhow::Result<()> {
    let name = required_name(&args.target, "top")?;
    let req = TopRequest {
        deployment: Some(DeploymentRef {
            namespace: args.namespaces.namespace.clone(),
            name: name.clone(),
        }),
        window: Some(super::stat::prost_duration(args.time_window)),
        limit: args.limit,
    };
    if args.once {
        let top = block_on(once(&args, req))?;
        return match args.common.output {
            Format::Json => print_json(&top),
            _ => print_table(&top),
        };
    }
    if args.common.output == Format::Json {
        return block_on(json_lines(&args, req));
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "`conduit top` draws a live table on a terminal; use --once (-o json) in scripts"
        );
    }
    live(
        &args,
        req,
        &format!("deploy/{name} -n {}", args.namespaces.namespace),
    )
}

async fn once(args: &TopArgs, req: TopRequest) -> anyhow::Result<Top> {
    let mut conn = api::connect_streaming(&args.common.api).await?;
    let request = conn.request(req);
    let mut updates = conn
        .client
        .top(request)
        .await
        .map_err(api::status_error)?
        .into_inner();
    let start = Instant::now();
    let mut latest = Top::default();
    while let Some(u) = updates.next().await {
        latest = u.map_err(api::status_error)?.into();
        if start.elapsed() >= ONCE_AFTER {
            break;
        }
    }
    Ok(latest)
}

async fn json_lines(args: &TopArgs, req: TopRequest) -> anyhow::Result<()> {
    let mut conn = api::connect_streaming(&args.common.api).await?;
    let request = conn.request(req);
    let mut updates = conn
        .client
        .top(request)
        .await
        .map_err(api::status_error)?
        .into_inner();
    while let Some(u) = updates.next().await {
        print_json_line(&Top::from(u.map_err(api::status_error)?))?;
    }
    Ok(())
}

fn print_table(top: &Top) -> anyhow::Result<()> {
    if top.rows.is_empty() {
        outln!("No requests seen yet.")?;
        return Ok(());
    }
    let mut t = output::Table::new([
        "COUNT",
        "METHOD",
        "AUTHORITY",
        "PATH",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P99",
    ]);
    for r in &top.rows {
        t.row(cells(r));
    }
    t.print()
}

fn cells(r: &conduit_api::json::TopRow) -> [String; 8] {
    let m = Some(&r.metrics);
    [
        r.metrics.total().to_string(),
        r.method.clone(),
        r.authority.clone(),
        r.path.clone(),
        success(m),
        rps(m),
        latency(Some(r.metrics.latency_ms_p50)),
        latency(Some(r.metrics.latency_ms_p99)),
    ]
}

enum Feed {
    Update(Top),
    Failed(String),
}

/// The network runs on its own thread; the terminal loop on this one.
fn live(args: &TopArgs, req: TopRequest, title: &str) -> anyhow::Result<()> {
    // Connect before taking over the terminal, so errors print normally.
    let api_args = args.common.api.clone();
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        block_on(async move {
            let opened = async {
                let mut conn = api::connect_streaming(&api_args).await?;
                let request = conn.request(req);
                let updates = conn
                    .client
                    .top(request)
                    .await
                    .map_err(api::status_error)?
                    .into_inner();
                anyhow::Ok((conn, updates))
            };
            let (_conn, mut updates) = match opened.await {
                Ok(ok) => {
                    let _ = ready_tx.send(Ok(()));
                    ok
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while let Some(u) = updates.next().await {
                let feed = match u {
                    Ok(u) => Feed::Update(u.into()),
                    Err(s) => Feed::Failed(s.message().to_string()),
                };
                if tx.send(feed).is_err() {
                    return;
                }
            }
            let _ = tx.send(Feed::Failed("the controller ended the stream".into()));
        });
    });
    ready_rx.recv()??;
    let mut terminal = ratatui::init();
    let result = draw_loop(&mut terminal, &rx, title);
    ratatui::restore();
    result
}

fn draw_loop(
    terminal: &mut ratatui::DefaultTerminal,
    rx: &mpsc::Receiver<Feed>,
    title: &str,
) -> anyhow::Result<()> {
    let mut top = Top::default();
    let mut status = String::from("waiting for the first update…");
    loop {
        while let Ok(feed) = rx.try_recv() {
            match feed {
                Feed::Update(t) => {
                    status = format!("{} paths · q to quit", t.rows.len());
                    top = t;
                }
                Feed::Failed(e) => status = format!("error: {e} · q to quit"),
            }
        }
        terminal.draw(|f| {
            let [head, body] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(f.area());
            f.render_widget(Line::from(format!("conduit top {title} · {status}")), head);
            let header = Row::new([
                "COUNT",
                "METHOD",
                "AUTHORITY",
                "PATH",
                "SUCCESS",
                "RPS",
                "P50",
                "P99",
            ])
            .style(Style::default().add_modifier(Modifier::BOLD));
            let rows = top.rows.iter().map(|r| Row::new(cells(r)));
            let widths = [
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Percentage(25),
                Constraint::Percentage(40),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(8),
            ];
            let table = Table::new(rows, widths)
                .header(header)
                .block(Block::default().borders(Borders::TOP));
            f.render_widget(table, body);
        })?;
        if !event::poll(Duration::from_millis(200))? {
            continue;
        }
        if let Event::Key(key) = event::read()? {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                return Ok(());
            }
        }
    }
}
