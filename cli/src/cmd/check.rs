//! `conduit check`: is the mesh healthy? What the CLI sees itself (the
//! control plane answers, versions match), then what the controller
//! reports (discovery, store, proxies). Exit code 1 when a check failed.

use conduit_api::json::{Check, CheckResult, CheckStatus};
use conduit_api::proto::public::v1::{CheckRequest, VersionRequest};

use crate::api;
use crate::args::CommonArgs;
use crate::cmd::block_on;
use crate::output::{Format, outln, print_json};

const CLI: &str = "conduit-cli";

fn result(
    status: CheckStatus,
    description: impl Into<String>,
    hint: impl Into<String>,
) -> CheckResult {
    CheckResult {
        category: CLI.into(),
        description: description.into(),
        status,
        hint: hint.into(),
    }
}

pub(crate) fn run(args: CommonArgs) -> anyhow::Result<()> {
    let check = block_on(gather(&args));
    if args.output == Format::Json {
        print_json(&check)?;
    } else {
        print_human(&check)?;
    }
    let failed = check
        .results
        .iter()
        .filter(|r| r.status == CheckStatus::Failed)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}

async fn gather(args: &CommonArgs) -> Check {
    let mut conn = match api::connect(&args.api).await {
        Ok(c) => c,
        Err(e) => {
            return Check {
                results: vec![result(
                    CheckStatus::Failed,
                    "the control plane is reachable",
                    format!("{e:#}"),
                )],
            };
        }
    };
    let mut results = vec![result(
        CheckStatus::Ok,
        format!("the control plane is reachable at {}", conn.target),
        "",
    )];
    match conn.client.version(VersionRequest {}).await {
        Ok(v) if v.get_ref().version == conduit_api::VERSION => results.push(result(
            CheckStatus::Ok,
            format!(
                "the control plane's version matches the CLI's ({})",
                conduit_api::VERSION
            ),
            "",
        )),
        Ok(v) => results.push(result(
            CheckStatus::Warning,
            "the control plane's version matches the CLI's",
            format!(
                "control plane {} vs CLI {}: use the same release of both",
                v.get_ref().version,
                conduit_api::VERSION
            ),
        )),
        Err(s) => results.push(result(
            CheckStatus::Failed,
            "the control plane answers Version",
            s.message(),
        )),
    }
    match conn.client.check(CheckRequest {}).await {
        Ok(reply) => results.extend(Check::from(reply.into_inner()).results),
        Err(s) => results.push(result(
            CheckStatus::Failed,
            "the control plane answers Check",
            s.message(),
        )),
    }
    Check { results }
}

fn print_human(check: &Check) -> std::io::Result<()> {
    let mut category = "";
    for r in &check.results {
        if r.category != category {
            if !category.is_empty() {
                outln!()?;
            }
            category = &r.category;
            outln!("{category}\n{}", "-".repeat(category.chars().count()))?;
        }
        let mark = match r.status {
            CheckStatus::Ok => "√",
            CheckStatus::Warning => "‼",
            CheckStatus::Failed => "×",
        };
        outln!("{mark} {}", r.description)?;
        if !r.hint.is_empty() {
            outln!("    {}", r.hint)?;
        }
    }
    let worst = check
        .results
        .iter()
        .map(|r| r.status)
        .fold(CheckStatus::Ok, |a, b| match (a, b) {
            (CheckStatus::Failed, _) | (_, CheckStatus::Failed) => CheckStatus::Failed,
            (CheckStatus::Warning, _) | (_, CheckStatus::Warning) => CheckStatus::Warning,
            _ => CheckStatus::Ok,
        });
    outln!(
        "\nStatus check results are {}",
        match worst {
            CheckStatus::Ok => "√",
            CheckStatus::Warning => "‼",
            CheckStatus::Failed => "×",
        }
    )
}
