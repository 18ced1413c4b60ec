//! `conduit authz deploy/NAME`: the inbound policy of a Deployment (its
//! Servers, routes and the authorizations that apply) and what each
//! allowed and denied over a window, like `linkerd viz authz`.

use conduit_api::json::{Authz, AuthzRow};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::public::v1::AuthzRequest;

use crate::api;
use crate::args::DeploymentWindowArgs;
use crate::cmd::{block_on, request_range, required_name};
use crate::output::{Format, Table, outln, print_json};

pub(crate) fn run(args: DeploymentWindowArgs) -> anyhow::Result<()> {
    let name = required_name(&args.target, "authz")?;
    let (start_unix_ms, end_unix_ms) = request_range(&args.bounds, args.time_window)?;
    let authz = block_on(async {
        let mut conn = api::connect(&args.common.api).await?;
        let req = AuthzRequest {
            deployment: Some(DeploymentRef {
                namespace: args.namespaces.namespace.clone(),
                name,
            }),
            window: Some(super::stat::prost_duration(args.time_window)),
            start_unix_ms,
            end_unix_ms,
        };
        let reply = conn.client.authz(req).await.map_err(api::status_error)?;
        anyhow::Ok(Authz::from(reply.into_inner()))
    })?;
    if args.common.output == Format::Json {
        return print_json(&authz);
    }
    let wide = args.common.output == Format::Wide;
    let mut header = vec!["SERVER", "PORT", "ROUTE", "AUTHORIZATION"];
    if wide {
        header.push("ADMITS");
    }
    header.extend(["ALLOWED", "DENIED", "AUDITED"]);
    let mut table = Table::new(header);
    for r in &authz.rows {
        table.row(cells(r, wide));
    }
    table.print()?;
    outln!("\nPorts no Server selects: {}", authz.default_policy)?;
    Ok(())
}

fn cells(r: &AuthzRow, wide: bool) -> Vec<String> {
    let or_dash = |s: &str, dash: &str| {
        if s.is_empty() {
            dash.to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = vec![
        r.server.clone(),
        if r.port == 0 {
            "*".into()
        } else {
            r.port.to_string()
        },
        or_dash(&r.route, "(no route)"),
        or_dash(&r.authorization, "(none: denied)"),
    ];
    if wide {
        out.push(or_dash(&r.admits, "-"));
    }
    let count = |v: f64| format!("{}", v.round() as u64);
    out.extend([count(r.allowed), count(r.denied), count(r.audited)]);
    out
}
