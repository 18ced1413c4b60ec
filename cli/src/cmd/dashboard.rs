//! `conduit dashboard`: prints the dashboard's URL and opens a browser when
//! there is one. Against a cluster, it port-forwards the controller's HTTP
//! port and keeps the forward open until Ctrl-C.

use conduit_api::proto::public::v1::VersionRequest;

use crate::api::{self, CONTROLLER_HTTP_PORT};
use crate::args::DashboardArgs;
use crate::cmd::block_on;
use crate::forward;
use crate::output::outln;

pub(crate) fn run(args: DashboardArgs) -> anyhow::Result<()> {
    block_on(async {
        let mut conn = api::connect(&args.api).await?;
        let version = conn
            .client
            .version(VersionRequest {})
            .await
            .map_err(api::status_error)?
            .into_inner();
        if conn.forward.is_none() {
            let url = with_session(version.dashboard_url, conn.credential());
            outln!("Conduit dashboard: {url}")?;
            open(&url, args.no_browser);
            return Ok(());
        }
        let http = forward::to_controller(CONTROLLER_HTTP_PORT).await?;
        let url = with_session(format!("http://{}", http.local), conn.credential());
        outln!(
            "Conduit dashboard: {url} (port-forward to {}; Ctrl-C to stop)",
            http.description
        )?;
        open(&url, args.no_browser);
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}

/// The URL that opens the dashboard with the caller's credential (which
/// tap needs): `/auth` turns it into a session cookie and goes on to `/`.
fn with_session(url: String, credential: Option<&str>) -> String {
    match credential {
        Some(token) => format!("{}/auth?token={token}", url.trim_end_matches('/')),
        None => url,
    }
}

/// Opens `url` with the desktop's opener when there is a display.
fn open(url: &str, no_browser: bool) {
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if no_browser || !has_display {
        return;
    }
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if opened.is_err() {
        eprintln!("(no browser opener found; open the URL yourself)");
    }
}
