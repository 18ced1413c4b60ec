//! What the demo runs: the emoji-vote application as Deployments of
//! namespace `demo`, every pod behind its own proxy, and where each process
//! listens.
//!
//! Ports are laid out from fixed bases so a user can find them (and move
//! all of them at once with `--port-offset`): the store and controller keep
//! their usual ports, and pod `k` takes ten ports from
//! `POD_PORT_BASE + 10 k`: application, proxy inbound, outbound, admin,
//! tap, then the proxy's opaque TCP routes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use conduit_api::IdentityName;
use conduit_api::discovery_file::{self as file, DiscoveryFile, Protocol};
use conduit_api::identity::CONTROL_PLANE_NAMESPACE;
use conduit_deploy::local_identity::IdentityFiles;

use super::supervisor::Spec;

pub(crate) const NAMESPACE: &str = "demo";
/// The port every demo service answers on (in authorities).
const SERVICE_PORT: u16 = 8080;
const VOTE_STORE_PORT: u16 = 6379;
const POD_PORT_BASE: u16 = 47_000;
const PORTS_PER_POD: u16 = 10;

/// A Deployment of the demo application.
struct DeploymentSpec {
    name: &'static str,
    replicas: usize,
    /// The port clients use in the authority; `None` for clients only.
    service: Option<(u16, Protocol)>,
}

/// web and emoji (2 replicas, so balancing shows) serve HTTP/gRPC;
/// vote-store is the opaque TCP edge; vote-bot only sends.
const APPLICATION: &[DeploymentSpec] = &[
    DeploymentSpec {
        name: "web",
        replicas: 1,
        service: Some((SERVICE_PORT, Protocol::Http)),
    },
    DeploymentSpec {
        name: "emoji",
        replicas: 2,
        service: Some((SERVICE_PORT, Protocol::Http)),
    },
    DeploymentSpec {
        name: "voting",
        replicas: 1,
        service: Some((SERVICE_PORT, Protocol::Http)),
    },
    DeploymentSpec {
        name: "vote-store",
        replicas: 1,
        service: Some((VOTE_STORE_PORT, Protocol::Opaque)),
    },
    DeploymentSpec {
        name: "vote-bot",
        replicas: 1,
        service: None,
    },
];

/// The version every demo pod runs, and the one `--rollout` brings
/// (`pod_template_hash` on their series).
pub(crate) const FIRST_VERSION: &str = "v1";
pub(crate) const ROLLOUT_VERSION: &str = "v2";
/// The rolled-out voting: slower and failing more than the first version.
const ROLLOUT_DELAY_MS: u64 = 50;
const ROLLOUT_EXTRA_FAILURES: f64 = 0.3;

/// Knobs of the demo that reach its processes.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) port_offset: u16,
    pub(crate) rps: u32,
    pub(crate) failure_rate: f64,
    pub(crate) data_dir: PathBuf,
    pub(crate) bin_dir: PathBuf,
    /// Run an unmeshed client that the policy denies.
    pub(crate) with_intruder: bool,
    /// Lay out a second version of voting, started later.
    pub(crate) rollout: bool,
    /// Where the controller reads its figures.
    pub(crate) metrics_backend: conduit_api::metrics_backend::MetricsBackend,
    /// Where the store forwards every series, if anywhere.
    pub(crate) remote_write_url: Option<String>,
}

/// Where one pod's processes listen.
#[derive(Clone, Debug)]
pub(crate) struct Pod {
    pub(crate) deployment: &'static str,
    pub(crate) name: String,
    /// The workload version its proxy reports.
    pub(crate) version: &'static str,
    pub(crate) app: SocketAddr,
    pub(crate) inbound: SocketAddr,
    pub(crate) outbound: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) tap: SocketAddr,
    /// The proxy's local listener for the opaque route to vote-store.
    pub(crate) vote_store_route: SocketAddr,
}

/// The control plane's addresses.
#[derive(Clone, Debug)]
pub(crate) struct ControlPlane {
    pub(crate) store_http: SocketAddr,
    pub(crate) store_grpc: SocketAddr,
    pub(crate) controller_http: SocketAddr,
    pub(crate) controller_grpc: SocketAddr,
    /// Destination and identity, for the proxies (mTLS).
    pub(crate) controller_mesh: SocketAddr,
}

pub(crate) struct Topology {
    pub(crate) settings: Settings,
    pub(crate) control: ControlPlane,
    /// The pods running from the start.
    pub(crate) pods: Vec<Pod>,
    /// With `--rollout`: voting's second version, started later beside
    /// the first as more pods of the same Deployment.
    pub(crate) rollout: Option<Pod>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Topology {
    pub(crate) fn new(settings: Settings) -> anyhow::Result<Self> {
        let offset = settings.port_offset;
        let port = |base: u16| {
            base.checked_add(offset).ok_or_else(|| {
                anyhow::anyhow!("--port-offset {offset} moves port {base} past 65535")
            })
        };
        let control = ControlPlane {
            store_http: loopback(port(9095)?),
            store_grpc: loopback(port(9096)?),
            controller_http: loopback(port(50_750)?),
            controller_grpc: loopback(port(50_751)?),
            controller_mesh: loopback(port(50_752)?),
        };
        let pod = |k: usize, deployment: &'static str, name: String, version| {
            let base = port(POD_PORT_BASE + PORTS_PER_POD * k as u16)?;
            anyhow::Ok(Pod {
                deployment,
                name,
                version,
                app: loopback(base),
                inbound: loopback(base + 1),
                outbound: loopback(base + 2),
                admin: loopback(base + 3),
                tap: loopback(base + 4),
                vote_store_route: loopback(base + 5),
            })
        };
        let mut pods = Vec::new();
        for deployment in APPLICATION {
            for replica in 0..deployment.replicas {
                let name = format!("{}-{replica}", deployment.name);
                pods.push(pod(pods.len(), deployment.name, name, FIRST_VERSION)?);
            }
        }
        let rollout = settings
            .rollout
            .then(|| pod(pods.len(), "voting", "voting-v2-0".into(), ROLLOUT_VERSION))
            .transpose()?;
        Ok(Self {
            settings,
            control,
            pods,
            rollout,
        })
    }

    /// Every pod, the rollout's included.
    fn all_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().chain(&self.rollout)
    }

    pub(crate) fn deployment_count(&self) -> usize {
        APPLICATION.len()
    }

    pub(crate) fn discovery_path(&self) -> PathBuf {
        self.settings.data_dir.join("discovery.yaml")
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        self.settings.data_dir.join("logs")
    }

    pub(crate) fn api_token_path(&self) -> PathBuf {
        self.settings.data_dir.join(super::API_TOKEN_FILE)
    }

    pub(crate) fn identity_files(&self) -> IdentityFiles {
        IdentityFiles::new(&self.settings.data_dir)
    }

    /// Every identity the demo's workloads prove: each Deployment's
    /// ServiceAccount, and the store's.
    pub(crate) fn identities(&self) -> Vec<IdentityName> {
        APPLICATION
            .iter()
            .map(|d| IdentityName::new(d.name, NAMESPACE))
            .chain([self.store_identity()])
            .collect()
    }

    fn store_identity(&self) -> IdentityName {
        IdentityName::store(
            CONTROL_PLANE_NAMESPACE,
            conduit_api::identity::DEFAULT_TRUST_DOMAIN,
        )
    }

    /// Flags that make a workload certify itself with the controller.
    fn identity_args(&self, flag_prefix: &str, identity: &IdentityName) -> Vec<String> {
        let files = self.identity_files();
        vec![
            format!("--{flag_prefix}identity-addr"),
            format!("https://{}", self.control.controller_mesh),
            format!("--{flag_prefix}identity-trust-anchors"),
            path(&files.trust_anchors()),
            format!("--{flag_prefix}identity-token-file"),
            path(&files.token(identity)),
        ]
    }

    /// Every port the demo will listen on, with what listens there.
    pub(crate) fn listeners(&self) -> Vec<(SocketAddr, String)> {
        let c = &self.control;
        let mut all = vec![
            (
                c.store_http,
                "telemetry store HTTP (PromQL API)".to_string(),
            ),
            (c.store_grpc, "telemetry store gRPC".to_string()),
            (c.controller_http, "controller HTTP (dashboard)".to_string()),
            (
                c.controller_grpc,
                "controller gRPC (public API)".to_string(),
            ),
            (
                c.controller_mesh,
                "controller gRPC for proxies (destination, identity)".to_string(),
            ),
        ];
        for pod in self.all_pods() {
            if pod.deployment != "vote-bot" {
                all.push((pod.app, format!("{} application", pod.name)));
            }
            all.push((pod.inbound, format!("{} proxy inbound", pod.name)));
            all.push((pod.outbound, format!("{} proxy outbound", pod.name)));
            all.push((pod.admin, format!("{} proxy admin", pod.name)));
            all.push((pod.tap, format!("{} proxy tap", pod.name)));
            if pod.deployment == "voting" {
                all.push((
                    pod.vote_store_route,
                    format!("{} proxy route to vote-store", pod.name),
                ));
            }
        }
        all
    }

    /// The static discovery file the controller serves destinations from;
    /// `rolled_out`: with the rollout's pods among voting's, so web's
    /// traffic splits between both versions.
    pub(crate) fn discovery(&self, rolled_out: bool) -> DiscoveryFile {
        let mut namespace = file::Namespace::default();
        let rollout = self.rollout.iter().filter(|_| rolled_out);
        let running: Vec<&Pod> = self.pods.iter().chain(rollout).collect();
        for deployment in APPLICATION {
            let pods = running
                .iter()
                .filter(|p| p.deployment == deployment.name)
                .map(|p| file::Pod {
                    name: p.name.clone(),
                    addr: p.inbound,
                    meshed: true,
                    tap: Some(p.tap),
                    admin: Some(p.admin),
                    ports: BTreeMap::new(),
                })
                .collect();
            namespace.deployments.insert(
                deployment.name.to_string(),
                file::Deployment {
                    service_account: deployment.name.to_string(),
                    labels: BTreeMap::from([("app".to_string(), deployment.name.to_string())]),
                    pods,
                    default_inbound_policy: None,
                },
            );
            if let Some((port, protocol)) = deployment.service {
                namespace.services.insert(
                    deployment.name.to_string(),
                    file::Service {
                        deployment: deployment.name.to_string(),
                        ports: vec![file::ServicePort {
                            port,
                            target: None,
                            protocol,
                        }],
                    },
                );
            }
        }
        namespace.policy = self.policy();
        let mut discovery = DiscoveryFile::default();
        discovery
            .namespaces
            .insert(NAMESPACE.to_string(), namespace);
        discovery
    }

    /// The demo's policy: voting answers web only, vote-store voting only
    /// (each by its mTLS identity); everything else keeps the default,
    /// which admits every client.
    fn policy(&self) -> file::Policy {
        let mut policy = file::Policy::default();
        let guarded = [
            (
                "voting-grpc",
                "voting",
                file::ServerProtocol::Grpc,
                "web-only",
                "web",
            ),
            (
                "vote-store-tcp",
                "vote-store",
                file::ServerProtocol::Opaque,
                "voting-only",
                "voting",
            ),
        ];
        for (server, deployment, protocol, authorization, client) in guarded {
            policy.mesh_tls_authentications.insert(
                client.to_string(),
                file::MeshTlsAuthentication {
                    service_accounts: vec![file::ServiceAccountRef {
                        name: client.to_string(),
                        namespace: None,
                    }],
                    ..Default::default()
                },
            );
            // Local pods answer on ports of their own, and a Server names
            // one port: each pod after the first (the rollout's too) gets
            // a Server and an authorization of its own, or it would admit
            // every client.
            let pods = self.all_pods().filter(|p| p.deployment == deployment);
            for (i, pod) in pods.enumerate() {
                let suffix = if i == 0 {
                    String::new()
                } else {
                    format!("-{}", pod.name)
                };
                let server = format!("{server}{suffix}");
                policy.servers.insert(
                    server.clone(),
                    file::Server {
                        deployment: deployment.to_string(),
                        port: pod.app.port(),
                        protocol,
                    },
                );
                policy.authorization_policies.insert(
                    format!("{authorization}{suffix}"),
                    file::AuthorizationPolicy {
                        target: file::PolicyTarget::Server(server),
                        required_authentications: vec![file::AuthenticationRef::MeshTls(
                            client.to_string(),
                        )],
                        audit: false,
                    },
                );
            }
        }
        policy
    }

    fn authority(&self, deployment: &str, port: u16) -> String {
        format!("{deployment}.{NAMESPACE}.svc.cluster.local:{port}")
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.settings.bin_dir.join(name)
    }

    fn spec(&self, name: &str, program: &str, args: Vec<String>) -> Spec {
        Spec {
            name: name.to_string(),
            program: self.bin(program),
            args,
            env: vec![(
                "RUST_LOG".into(),
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )],
            log: self.log_dir().join(format!("{name}.log")),
        }
    }

    pub(crate) fn store(&self) -> Spec {
        let c = &self.control;
        self.spec(
            "telemetry-store",
            "conduit-telemetry-store",
            strings([
                "--http-listen",
                &c.store_http.to_string(),
                "--grpc-listen",
                &c.store_grpc.to_string(),
                "--data-dir",
                &path(&self.settings.data_dir.join("store")),
            ])
            .into_iter()
            .chain(self.identity_args("", &self.store_identity()))
            .chain(
                self.settings
                    .remote_write_url
                    .iter()
                    .flat_map(|url| ["--remote-write-url".to_string(), url.clone()]),
            )
            .collect(),
        )
    }

    pub(crate) fn controller(&self) -> Spec {
        let c = &self.control;
        let mut args = strings([
            "--grpc-listen",
            &c.controller_grpc.to_string(),
            "--http-listen",
            &c.controller_http.to_string(),
            "--mesh-listen",
            &c.controller_mesh.to_string(),
            "--store-addr",
            &format!("https://{}", c.store_grpc),
            "--discovery",
            &format!("static:{}", path(&self.discovery_path())),
            "--mode",
            "local",
            "--identity-trust-anchors",
            &path(&self.identity_files().trust_anchors()),
            "--identity-issuer-certificate",
            &path(&self.identity_files().issuer_certificate()),
            "--identity-issuer-key",
            &path(&self.identity_files().issuer_key()),
            "--identity-token-key",
            &path(&self.identity_files().token_key()),
            "--api-token-file",
            &path(&self.api_token_path()),
        ]);
        args.extend([
            "--metrics-backend".to_string(),
            self.settings.metrics_backend.to_string(),
        ]);
        self.spec("controller", "conduit-controller", args)
    }

    /// The sidecar of `pod`, in explicit mode: its app talks to it by
    /// address, peers find it through the controller's destination service.
    pub(crate) fn proxy(&self, pod: &Pod) -> Spec {
        let c = &self.control;
        let mut args = strings([
            "run",
            "--mode",
            "explicit",
            "--inbound-listen",
            &pod.inbound.to_string(),
            "--outbound-listen",
            &pod.outbound.to_string(),
            "--admin-listen",
            &pod.admin.to_string(),
            "--tap-listen",
            &pod.tap.to_string(),
            "--inbound-app-addr",
            &pod.app.to_string(),
            "--namespace",
            NAMESPACE,
            "--deployment",
            pod.deployment,
            "--pod",
            &pod.name,
            "--workload-version",
            pod.version,
            "--service-account",
            pod.deployment,
            "--telemetry-addr",
            &format!("https://{}", c.store_grpc),
            "--destination-addr",
            &format!("https://{}", c.controller_mesh),
        ]);
        args.extend(self.identity_args("", &IdentityName::new(pod.deployment, NAMESPACE)));
        match pod.deployment {
            // vote-store speaks first: its inbound must not wait to detect.
            "vote-store" => args.extend(strings(["--opaque-ports", &pod.app.port().to_string()])),
            "voting" => args.extend(strings([
                "--outbound-tcp-route",
                &format!(
                    "{}={}",
                    pod.vote_store_route,
                    self.authority("vote-store", VOTE_STORE_PORT)
                ),
            ])),
            _ => {}
        }
        self.spec(&format!("proxy-{}", pod.name), "conduit-proxy", args)
    }

    /// The unmeshed client that tries voting and vote-store directly.
    pub(crate) fn intruder(&self) -> Option<Spec> {
        let inbound = |d: &str| {
            self.pods
                .iter()
                .find(|p| p.deployment == d)
                .map(|p| p.inbound)
        };
        let (voting, vote_store) = (inbound("voting")?, inbound("vote-store")?);
        Some(self.spec(
            "intruder",
            "conduit-demo-app",
            strings([
                "intruder",
                "--voting",
                &voting.to_string(),
                "--vote-store",
                &vote_store.to_string(),
            ]),
        ))
    }

    /// The application process of `pod`.
    pub(crate) fn app(&self, pod: &Pod) -> Spec {
        let listen = pod.app.to_string();
        let outbound = pod.outbound.to_string();
        let args = match pod.deployment {
            "web" => strings([
                "web",
                "--listen",
                &listen,
                "--emoji",
                &self.authority("emoji", SERVICE_PORT),
                "--voting",
                &self.authority("voting", SERVICE_PORT),
                "--outbound-proxy",
                &outbound,
            ]),
            "voting" => {
                let (failure_rate, delay_ms) = match pod.version {
                    ROLLOUT_VERSION => (
                        (self.settings.failure_rate + ROLLOUT_EXTRA_FAILURES).min(1.0),
                        ROLLOUT_DELAY_MS,
                    ),
                    _ => (self.settings.failure_rate, 0),
                };
                strings([
                    "voting",
                    "--listen",
                    &listen,
                    "--vote-store",
                    &pod.vote_store_route.to_string(),
                    "--failure-rate",
                    &failure_rate.to_string(),
                    "--delay-ms",
                    &delay_ms.to_string(),
                ])
            }
            "vote-bot" => strings([
                "vote-bot",
                "--web",
                &self.authority("web", SERVICE_PORT),
                "--outbound-proxy",
                &outbound,
                "--rps",
                &self.settings.rps.to_string(),
            ]),
            role => strings([role, "--listen", &listen]),
        };
        self.spec(&pod.name, "conduit-demo-app", args)
    }
}

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pod of a guarded Deployment, the rollout's included, answers
    /// on a port a Server names, and each such Server has an
    /// authorization admitting its one client.
    #[test]
    fn the_policy_guards_every_pod_of_voting_and_vote_store() {
        let topology = Topology::new(Settings {
            port_offset: 0,
            rps: 1,
            failure_rate: 0.0,
            data_dir: PathBuf::new(),
            bin_dir: PathBuf::new(),
            with_intruder: false,
            rollout: true,
            metrics_backend: Default::default(),
            remote_write_url: None,
        })
        .unwrap();
        let policy = topology.policy();
        let guarded: Vec<&Pod> = topology
            .all_pods()
            .filter(|p| ["voting", "vote-store"].contains(&p.deployment))
            .collect();
        assert!(guarded.iter().any(|p| p.version == ROLLOUT_VERSION));
        for pod in guarded {
            let (server, _) = policy
                .servers
                .iter()
                .find(|(_, s)| s.deployment == pod.deployment && s.port == pod.app.port())
                .unwrap_or_else(|| panic!("no Server for {}", pod.name));
            let admits = policy
                .authorization_policies
                .values()
                .any(|a| a.target == file::PolicyTarget::Server(server.clone()));
            assert!(admits, "nothing authorizes {server} ({})", pod.name);
        }
    }
}
