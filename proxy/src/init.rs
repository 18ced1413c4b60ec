//! `conduit-proxy init`: programs the pod's iptables so that every TCP
//! connection into or out of the pod goes through its proxy. It runs once,
//! as the pod's first init container, with NET_ADMIN.
//!
//! The nat table gets two chains of its own, jumped to from PREROUTING
//! (connections coming in) and OUTPUT (connections the pod's containers
//! open):
//! - `CONDUIT_INBOUND` redirects to the inbound port, except the skipped
//!   ports (the proxy's admin and tap ports, which the kubelet and the
//!   control plane reach directly).
//! - `CONDUIT_OUTPUT` redirects to the outbound port, except connections of
//!   the proxy's own user (or they would loop back into the proxy), over
//!   loopback (containers of one pod talking to each other), and to skipped
//!   ports.
//!
//! The rules are built as data ([`Plan`]) and applied in one
//! `iptables-restore --noflush` transaction: the chains are flushed and
//! refilled, and the jumps are added only when missing, so running init
//! again (a restarted init container) leaves the same rules as running it
//! once. IPv4 only.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use conduit_api::sidecar::{
    ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT, PROXY_UID, PortRange, TAP_PORT,
};

pub(crate) const INBOUND_CHAIN: &str = "CONDUIT_INBOUND";
pub(crate) const OUTPUT_CHAIN: &str = "CONDUIT_OUTPUT";
/// iptables' multiport match takes at most 15 ports, a range counting two.
const MULTIPORT_SLOTS: usize = 15;

/// `conduit-proxy init`'s flags (also `CONDUIT_PROXY_INIT_<FLAG>`).
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Port of the proxy's inbound listener
    #[arg(long, env = "CONDUIT_PROXY_INIT_INBOUND_PORT", default_value_t = INBOUND_PORT)]
    inbound_port: u16,
    /// Port of the proxy's outbound listener
    #[arg(long, env = "CONDUIT_PROXY_INIT_OUTBOUND_PORT", default_value_t = OUTBOUND_PORT)]
    outbound_port: u16,
    /// User id the proxy runs as; its own connections are not redirected
    #[arg(long, env = "CONDUIT_PROXY_INIT_PROXY_UID", default_value_t = PROXY_UID)]
    proxy_uid: u32,
    /// Inbound ports (and ranges, `8000-8100`) that bypass the proxy
    #[arg(
        long,
        env = "CONDUIT_PROXY_INIT_SKIP_INBOUND_PORTS",
        value_name = "PORTS",
        value_delimiter = ',',
        default_values_t = [PortRange::single(TAP_PORT), PortRange::single(ADMIN_PORT)]
    )]
    skip_inbound_ports: Vec<PortRange>,
    /// Outbound destination ports that bypass the proxy
    #[arg(
        long,
        env = "CONDUIT_PROXY_INIT_SKIP_OUTBOUND_PORTS",
        value_name = "PORTS",
        value_delimiter = ','
    )]
    skip_outbound_ports: Vec<PortRange>,
    /// Which iptables to run: the system's `iptables-restore`, or the
    /// `-nft` or `-legacy` variant explicitly
    #[arg(long, env = "CONDUIT_PROXY_INIT_IPTABLES", value_enum, default_value_t = Backend::System)]
    iptables: Backend,
    /// Print the rules without applying them
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    System,
    Nft,
    Legacy,
}

impl Backend {
    fn program(self, tool: &str) -> String {
        match self {
            Backend::System => format!("iptables-{tool}"),
            Backend::Nft => format!("iptables-nft-{tool}"),
            Backend::Legacy => format!("iptables-legacy-{tool}"),
        }
    }
}

/// Runs `conduit-proxy init`.
pub(crate) fn main(args: Args) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit-proxy init: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let plan = Plan {
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        proxy_uid: args.proxy_uid,
        skip_inbound: args.skip_inbound_ports.clone(),
        skip_outbound: args.skip_outbound_ports.clone(),
    };
    if args.dry_run {
        print!("{}", plan.restore_script(&Jumps::default()));
        return Ok(());
    }
    let existing = Jumps::find(&save(args.iptables)?);
    let script = plan.restore_script(&existing);
    restore(args.iptables, &script)?;
    let applied = Jumps::find(&save(args.iptables)?);
    if !applied.inbound || !applied.output {
        bail!(
            "iptables-restore succeeded but the jumps to {INBOUND_CHAIN} and {OUTPUT_CHAIN} are not in the nat table"
        );
    }
    print!("{script}");
    Ok(())
}

/// The redirection a pod gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) inbound_port: u16,
    pub(crate) outbound_port: u16,
    pub(crate) proxy_uid: u32,
    pub(crate) skip_inbound: Vec<PortRange>,
    pub(crate) skip_outbound: Vec<PortRange>,
}

/// One rule: a chain and the arguments after `-A CHAIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) chain: &'static str,
    pub(crate) spec: String,
}

impl Plan {
    /// The rules of Conduit's chains, in order.
    pub(crate) fn chain_rules(&self) -> Vec<Rule> {
        let rule = |chain, spec: String| Rule { chain, spec };
        let mut rules: Vec<Rule> = multiport(&self.skip_inbound)
            .map(|ports| {
                rule(
                    INBOUND_CHAIN,
                    format!("-p tcp -m multiport --dports {ports} -j RETURN"),
                )
            })
            .collect();
        rules.push(rule(
            INBOUND_CHAIN,
            format!("-p tcp -j REDIRECT --to-ports {}", self.inbound_port),
        ));
        rules.push(rule(
            OUTPUT_CHAIN,
            format!("-m owner --uid-owner {} -j RETURN", self.proxy_uid),
        ));
        rules.push(rule(OUTPUT_CHAIN, "-o lo -j RETURN".to_string()));
        rules.extend(multiport(&self.skip_outbound).map(|ports| {
            rule(
                OUTPUT_CHAIN,
                format!("-p tcp -m multiport --dports {ports} -j RETURN"),
            )
        }));
        rules.push(rule(
            OUTPUT_CHAIN,
            format!("-p tcp -j REDIRECT --to-ports {}", self.outbound_port),
        ));
        rules
    }

    /// The `iptables-restore --noflush` input: our chains declared and
    /// flushed, refilled, and the jumps `existing` lacks.
    pub(crate) fn restore_script(&self, existing: &Jumps) -> String {
        let mut script = String::from("*nat\n");
        for chain in [INBOUND_CHAIN, OUTPUT_CHAIN] {
            let _ = writeln!(script, ":{chain} - [0:0]");
        }
        for chain in [INBOUND_CHAIN, OUTPUT_CHAIN] {
            let _ = writeln!(script, "-F {chain}");
        }
        for rule in self.chain_rules() {
            let _ = writeln!(script, "-A {} {}", rule.chain, rule.spec);
        }
        if !existing.inbound {
            let _ = writeln!(script, "-A PREROUTING -p tcp -j {INBOUND_CHAIN}");
        }
        if !existing.output {
            let _ = writeln!(script, "-A OUTPUT -p tcp -j {OUTPUT_CHAIN}");
        }
        script.push_str("COMMIT\n");
        script
    }
}

/// iptables' multiport lists for `ports`, each within the match's limit.
fn multiport(ports: &[PortRange]) -> impl Iterator<Item = String> + '_ {
    let mut lists: Vec<Vec<String>> = Vec::new();
    let mut used = MULTIPORT_SLOTS;
    for port in ports {
        let slots = if port.first == port.last { 1 } else { 2 };
        if used + slots > MULTIPORT_SLOTS {
            lists.push(Vec::new());
            used = 0;
        }
        used += slots;
        let text = if port.first == port.last {
            port.first.to_string()
        } else {
            format!("{}:{}", port.first, port.last)
        };
        lists.last_mut().expect("a list was pushed").push(text);
    }
    lists.into_iter().map(|l| l.join(","))
}

/// Which of Conduit's jumps the nat table already has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Jumps {
    pub(crate) inbound: bool,
    pub(crate) output: bool,
}

impl Jumps {
    /// Reads them from `iptables-save -t nat` output.
    pub(crate) fn find(saved: &str) -> Self {
        let has = |chain: &str, target: &str| {
            saved.lines().any(|line| {
                line.starts_with(&format!("-A {chain} "))
                    && line
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .windows(2)
                        .any(|w| w == ["-j", target])
            })
        };
        Self {
            inbound: has("PREROUTING", INBOUND_CHAIN),
            output: has("OUTPUT", OUTPUT_CHAIN),
        }
    }
}

fn save(backend: Backend) -> anyhow::Result<String> {
    let program = backend.program("save");
    let output = Command::new(&program)
        .args(["-t", "nat"])
        .stderr(Stdio::piped())
        .output()
        .with_context(|| missing(&program))?;
    if !output.status.success() {
        bail!(
            "{program} -t nat failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{program} printed non-UTF-8"))
}

fn restore(backend: Backend, script: &str) -> anyhow::Result<()> {
    let program = backend.program("restore");
    let mut child = Command::new(&program)
        .args(["--noflush", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| missing(&program))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .with_context(|| format!("writing the rules to {program}"))?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{program} rejected the rules ({}): {}\nthe rules were:\n{script}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn missing(program: &str) -> String {
    format!(
        "cannot run {program}: is iptables installed (Debian package `iptables`) and is this \
         running with NET_ADMIN?"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(skip_inbound: &str, skip_outbound: &str) -> Plan {
        Plan {
            inbound_port: INBOUND_PORT,
            outbound_port: OUTBOUND_PORT,
            proxy_uid: PROXY_UID,
            skip_inbound: conduit_api::sidecar::parse_port_list(skip_inbound).unwrap(),
            skip_outbound: conduit_api::sidecar::parse_port_list(skip_outbound).unwrap(),
        }
    }

    #[test]
    fn a_fresh_table_gets_chains_rules_and_jumps() {
        let script = plan("4190,4191", "3306").restore_script(&Jumps::default());
        assert_eq!(
            script,
            "*nat\n\
             :CONDUIT_INBOUND - [0:0]\n\
             :CONDUIT_OUTPUT - [0:0]\n\
             -F CONDUIT_INBOUND\n\
             -F CONDUIT_OUTPUT\n\
             -A CONDUIT_INBOUND -p tcp -m multiport --dports 4190,4191 -j RETURN\n\
             -A CONDUIT_INBOUND -p tcp -j REDIRECT --to-ports 4143\n\
             -A CONDUIT_OUTPUT -m owner --uid-owner 2102 -j RETURN\n\
             -A CONDUIT_OUTPUT -o lo -j RETURN\n\
             -A CONDUIT_OUTPUT -p tcp -m multiport --dports 3306 -j RETURN\n\
             -A CONDUIT_OUTPUT -p tcp -j REDIRECT --to-ports 4140\n\
             -A PREROUTING -p tcp -j CONDUIT_INBOUND\n\
             -A OUTPUT -p tcp -j CONDUIT_OUTPUT\n\
             COMMIT\n"
        );
    }

    #[test]
    fn existing_jumps_are_not_added_again() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:CONDUIT_INBOUND - [0:0]\n\
                     -A PREROUTING -p tcp -j CONDUIT_INBOUND\n\
                     -A OUTPUT -p tcp -j CONDUIT_OUTPUT\nCOMMIT\n";
        let jumps = Jumps::find(saved);
        assert_eq!(
            jumps,
            Jumps {
                inbound: true,
                output: true
            }
        );
        let script = plan("", "").restore_script(&jumps);
        assert!(!script.contains("-A PREROUTING"), "{script}");
        assert!(!script.contains("-A OUTPUT "), "{script}");
        assert!(script.contains("-F CONDUIT_OUTPUT"), "{script}");
    }

    #[test]
    fn jumps_to_other_chains_do_not_count() {
        let saved = "-A PREROUTING -p tcp -j CONDUIT_INBOUND_OLD\n-A OUTPUT -j KUBE-SERVICES\n";
        assert_eq!(Jumps::find(saved), Jumps::default());
    }

    #[test]
    fn no_skipped_ports_means_no_multiport_rule() {
        let rules = plan("", "").chain_rules();
        assert!(
            rules.iter().all(|r| !r.spec.contains("multiport")),
            "{rules:?}"
        );
    }

    #[test]
    fn long_port_lists_are_split_at_fifteen_slots() {
        let ports: Vec<String> = (1..=20).map(|p| p.to_string()).collect();
        let lists: Vec<String> = multiport(
            &conduit_api::sidecar::parse_port_list(&(ports.join(",") + ",100-200,300-400"))
                .unwrap(),
        )
        .collect();
        assert_eq!(
            lists[0],
            (1..=15)
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(lists[1], "16,17,18,19,20,100:200,300:400");
        assert_eq!(lists.len(), 2);
    }
}
