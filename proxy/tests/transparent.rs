//! Transparent mode for real: the test makes a network namespace (the
//! "pod") joined to the host by a veth pair, programs it with `conduit-proxy
//! init`, runs a real `conduit-proxy` in transparent mode inside it as the
//! proxy's user, and checks that:
//! - a client in the pod dialing a server's address is carried by the
//!   proxy (its `/metrics` count every request) and reaches exactly the
//!   server it dialed (the original destination is preserved);
//! - a client outside dialing the pod's address reaches the pod's app
//!   through the proxy's inbound side, at the pod's address: a port the
//!   app binds to loopback only stays private;
//! - a redirected connection to one of the proxy's own ports is refused
//!   and counted (it would loop, or reach the outbound listener);
//! - skipped ports, inbound and outbound, bypass the proxy;
//! - running init again changes nothing;
//! - and init without iptables, or with bad ports, says so.
//!
//! Needs root (namespaces, iptables), `ip` (Debian `iproute2`),
//! `iptables`, and `setpriv` (`util-linux`). The namespace and veth are
//! removed when the test ends, pass or fail.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use conduit_api::sidecar::{ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT, PROXY_UID};

const PROXY: &str = env!("CARGO_BIN_EXE_conduit-proxy");
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program}: {e}. This test needs root and the Debian packages \
             iproute2 (ip), iptables and util-linux (setpriv)"
            )
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace with a veth to the host, removed on drop (which
/// also removes the veth pair).
struct Pod {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    proxy: Option<Child>,
}

impl Pod {
    fn create() -> Self {
        let uid = run("id", &["-u"]);
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "transparent mode tests need root: they create a network namespace and program iptables"
        );
        // Unique per process and pod, so concurrent runs do not collide;
        // /30 out of 10.234.0.0/16 chosen from both.
        static PODS: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = PODS.fetch_add(1, Ordering::Relaxed);
        let name = format!("conduit-t{pid}-{n}");
        let block = ((pid * 4 + n) % 16_384) * 4;
        let subnet = |host: u32| {
            Ipv4Addr::new(
                10,
                234,
                (block / 256) as u8,
                (block % 256) as u8 + host as u8,
            )
        };
        let host_if = format!("cdh{pid}-{n}");
        let pod_if = format!("cdp{pid}-{n}");
        let pod = Pod {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: subnet(1),
            pod_ip: subnet(2),
            proxy: None,
        };
        // Leftovers of a killed run that had the same pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        run("ip", &["netns", "add", &name]);
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &pod_if,
            ],
        );
        run("ip", &["link", "set", &pod_if, "netns", &name]);
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", pod.host_ip),
                "dev",
                &host_if,
            ],
        );
        run("ip", &["link", "set", &host_if, "up"]);
        pod.exec(
            "ip",
            &["addr", "add", &format!("{}/30", pod.pod_ip), "dev", &pod_if],
        );
        pod.exec("ip", &["link", "set", &pod_if, "up"]);
        pod.exec("ip", &["link", "set", "lo", "up"]);
        pod
    }

    /// Runs a command inside the namespace.
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend(args);
        run("ip", &all)
    }

    /// Runs `f` on a thread whose sockets live in the namespace.
    fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let ns = File::open(&path).expect("open the namespace");
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("enter the namespace");
            f()
        })
    }

    fn log(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}-proxy.log", self.name))
    }

    fn start_proxy(&mut self) {
        let log = self.log();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "setpriv"])
            .arg(format!("--reuid={PROXY_UID}"))
            .arg(format!("--regid={PROXY_UID}"))
            .args(["--clear-groups", "--", PROXY, "run"])
            .env("CONDUIT_PROXY_MODE", "transparent")
            .env("CONDUIT_PROXY_NAMESPACE", "shop")
            .env("CONDUIT_PROXY_DEPLOYMENT", "web")
            .env("CONDUIT_PROXY_POD", "web-0")
            .env("RUST_LOG", "conduit_proxy=debug")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start conduit-proxy");
        self.proxy = Some(child);
        // The admin port is skipped by iptables, so the host reaches it.
        let admin = SocketAddr::from((self.pod_ip, ADMIN_PORT));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = http_get(admin, "/ready", "admin") {
                return;
            }
            if let Some(status) = self.proxy.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "conduit-proxy exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "the proxy never became ready");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The proxy's `/metrics`.
    fn metrics(&self) -> String {
        let admin = SocketAddr::from((self.pod_ip, ADMIN_PORT));
        let (status, body) = http_get(admin, "/metrics", "admin").unwrap();
        assert_eq!(status, 200);
        body
    }

    /// `request_total` of one direction, summed over label sets.
    fn requests(&self, direction: &str) -> u64 {
        let direction = format!("direction=\"{direction}\"");
        metric_sum(&self.metrics(), "request_total{", &direction)
    }

    fn nat_rules(&self) -> String {
        let saved = self.exec("iptables-save", &["-t", "nat"]);
        String::from_utf8(saved.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut proxy) = self.proxy.take() {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "conduit-proxy's log:\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
        }
        let _ = std::fs::remove_file(self.log());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        // Gone with the namespace, unless setup failed before moving its
        // peer there.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}

/// The sum of the samples whose line starts with `series` and contains
/// `label` (`name="value"`).
fn metric_sum(text: &str, series: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(series) && l.contains(label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// A tiny HTTP/1.1 server answering every request with `name` and the
/// address the connection was made to.
fn serve(listener: TcpListener, name: &'static str) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let body = format!("{name} at {}", stream.local_addr().unwrap());
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
}

fn http_get(addr: SocketAddr, path: &str, host: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn listen(ip: Ipv4Addr) -> (TcpListener, u16) {
    let listener = TcpListener::bind(SocketAddrV4::new(ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn transparent_mode_intercepts_preserves_destinations_and_honours_skips() {
    let mut pod = Pod::create();

    // Servers outside the pod, on the host's end of the veth.
    let (a, port_a) = listen(pod.host_ip);
    let (b, port_b) = listen(pod.host_ip);
    let (direct, port_direct) = listen(pod.host_ip);
    serve(a, "server-a");
    serve(b, "server-b");
    serve(direct, "server-direct");

    // The pod's own app, on two ports, one of which skips the proxy.
    let (app_port, app_skip_port) = pod
        .spawn(|| {
            let (app, port) = listen(Ipv4Addr::UNSPECIFIED);
            let (skip, skip_port) = listen(Ipv4Addr::UNSPECIFIED);
            serve(app, "app");
            serve(skip, "app-skipped");
            (port, skip_port)
        })
        .join()
        .unwrap();

    let skip_in = format!("4190,4191,{app_skip_port}");
    let skip_out = port_direct.to_string();
    let init = |pod: &Pod| {
        pod.exec(
            PROXY,
            &[
                "init",
                "--skip-inbound-ports",
                &skip_in,
                "--skip-outbound-ports",
                &skip_out,
            ],
        )
    };
    let printed = String::from_utf8(init(&pod).stdout).unwrap();
    assert!(
        printed.contains("-A CONDUIT_OUTPUT -p tcp -j REDIRECT --to-ports 4140"),
        "{printed}"
    );
    let rules = pod.nat_rules();
    init(&pod);
    assert_eq!(
        pod.nat_rules(),
        rules,
        "running init twice changed the rules"
    );
    assert_eq!(rules.matches("-j CONDUIT_OUTPUT").count(), 1, "{rules}");
    assert_eq!(rules.matches("-j CONDUIT_INBOUND").count(), 1, "{rules}");

    pod.start_proxy();
    assert_eq!(pod.requests("outbound"), 0);

    // Outbound: the app dials servers by address; the proxy carries every
    // request to the server that was dialed.
    const N: u64 = 5;
    let (host_ip, pod_ip) = (pod.host_ip, pod.pod_ip);
    let answers = pod
        .spawn(move || {
            let mut answers = Vec::new();
            for _ in 0..N {
                for port in [port_a, port_b] {
                    let addr = SocketAddr::from((host_ip, port));
                    answers.push(http_get(addr, "/", &addr.to_string()).unwrap());
                }
            }
            answers
        })
        .join()
        .unwrap();
    for (i, (status, body)) in answers.iter().enumerate() {
        let (name, port) = if i % 2 == 0 {
            ("server-a", port_a)
        } else {
            ("server-b", port_b)
        };
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body, &format!("{name} at {host_ip}:{port}"));
    }
    assert_eq!(
        pod.requests("outbound"),
        2 * N,
        "every outbound request went through the proxy"
    );

    // Outbound to a skipped port: straight to the server.
    let skipped = pod
        .spawn(move || {
            let addr = SocketAddr::from((host_ip, port_direct));
            http_get(addr, "/", &addr.to_string()).unwrap()
        })
        .join()
        .unwrap();
    assert_eq!(
        skipped.1,
        format!("server-direct at {host_ip}:{port_direct}")
    );
    assert_eq!(
        pod.requests("outbound"),
        2 * N,
        "a skipped port went through the proxy"
    );

    // Inbound: a client outside dials the pod; the proxy hands the request
    // to the app on the port that was dialed.
    for _ in 0..N {
        let addr = SocketAddr::from((pod_ip, app_port));
        let (status, body) = http_get(addr, "/", &addr.to_string()).unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, format!("app at {pod_ip}:{app_port}"));
    }
    assert_eq!(pod.requests("inbound"), N);

    // Inbound to a skipped port: straight to the app, on the pod's address.
    let addr = SocketAddr::from((pod_ip, app_skip_port));
    let (_, body) = http_get(addr, "/", &addr.to_string()).unwrap();
    assert_eq!(body, format!("app-skipped at {pod_ip}:{app_skip_port}"));
    assert_eq!(
        pod.requests("inbound"),
        N,
        "a skipped inbound port went through the proxy"
    );
}

#[test]
fn inbound_reaches_only_what_the_pod_exposes() {
    let mut pod = Pod::create();
    let (server, server_port) = listen(pod.host_ip);
    serve(server, "server");
    // The app: one port on every address, one on loopback only.
    let (public_port, private_port) = pod
        .spawn(|| {
            let (public, public_port) = listen(Ipv4Addr::UNSPECIFIED);
            let (private, private_port) = listen(Ipv4Addr::LOCALHOST);
            serve(public, "app");
            serve(private, "app-private");
            (public_port, private_port)
        })
        .join()
        .unwrap();
    pod.exec(PROXY, &["init", "--skip-inbound-ports", "4190,4191"]);
    pod.start_proxy();
    let pod_ip = pod.pod_ip;

    let public = SocketAddr::from((pod_ip, public_port));
    let (status, body) = http_get(public, "/", &public.to_string()).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("app at {pod_ip}:{public_port}"));

    // Without the proxy a client outside cannot reach a loopback port, so
    // through it neither.
    let private = SocketAddr::from((pod_ip, private_port));
    let (status, body) = http_get(private, "/", &private.to_string()).unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("app-private"), "{body}");

    // The proxy's own ports: the outbound listener would carry the request
    // to `server` as the pod; the inbound one would forward to itself.
    let server = SocketAddr::from((pod.host_ip, server_port)).to_string();
    for port in [OUTBOUND_PORT, INBOUND_PORT] {
        let answer = http_get(SocketAddr::from((pod_ip, port)), "/", &server);
        assert!(
            matches!(answer, Ok((0, _)) | Err(_)),
            "port {port} answered {answer:?}"
        );
    }
    let refused = metric_sum(
        &pod.metrics(),
        "inbound_connections_refused_total{",
        "reason=\"proxy_port\"",
    );
    assert_eq!(refused, 2);
    assert_eq!(
        pod.requests("outbound"),
        0,
        "nothing reached the outbound side"
    );
}

#[test]
fn init_says_what_is_missing_and_rejects_bad_ports() {
    let out = Command::new(PROXY)
        .args(["init", "--skip-outbound-ports", "3306"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot run iptables-save") && stderr.contains("Debian package `iptables`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "printed rules it did not apply");

    let out = Command::new(PROXY)
        .args(["init", "--skip-inbound-ports", "80,http"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"http\" is not a port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
