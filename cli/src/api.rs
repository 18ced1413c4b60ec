//! Finding and dialing the controller's public API.
//!
//! Where to look, in order: `--api-addr` (or `CONDUIT_API_ADDR`, through
//! clap) and only there when given; otherwise the local demo's default
//! address, then the current kubeconfig context, through a port-forward to
//! the controller pod. When nothing answers, the error says everywhere it
//! looked, in one line.

use std::net::SocketAddr;
use std::time::Duration;

use conduit_api::proto::public::v1::api_client::ApiClient;
use tonic::transport::{Channel, Endpoint};

use crate::args::ApiArgs;
use crate::forward::{self, Forward};

/// Where `conduit demo` serves the public gRPC API.
pub(crate) const LOCAL_API_ADDR: &str = "127.0.0.1:50751";
/// The controller's gRPC and HTTP ports in its pod.
pub(crate) const CONTROLLER_GRPC_PORT: u16 = 50751;
pub(crate) const CONTROLLER_HTTP_PORT: u16 = 50750;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the controller; keeps the port-forward (if any) open.
pub(crate) struct Connection {
    pub(crate) client: ApiClient<Channel>,
    /// Where the controller was found, for messages.
    pub(crate) target: String,
    /// Held so the forward lives as long as the connection.
    pub(crate) forward: Option<Forward>,
    /// What tap and top present: `--api-token-file`, else the local demo's
    /// token, else (through a port-forward) the kubeconfig's token.
    credential: Option<String>,
}

impl Connection {
    pub(crate) fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// A call that carries the caller's credential.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(value) = self
            .credential
            .as_ref()
            .and_then(|c| format!("Bearer {c}").parse().ok())
        {
            req.metadata_mut().insert("authorization", value);
        }
        req
    }
}

/// The token of `--api-token-file`, else of the local demo when that is
/// where the controller was found.
fn local_credential(args: &ApiArgs, local: bool) -> anyhow::Result<Option<String>> {
    if let Some(path) = &args.api_token_file {
        let token = conduit_identity::bearer::BearerToken::read(path).map_err(|e| {
            anyhow::anyhow!("cannot read the API token {} ({e}; from --api-token-file or CONDUIT_API_TOKEN_FILE)", path.display())
        })?;
        return Ok(Some(token.secret().to_string()));
    }
    if !local {
        return Ok(None);
    }
    let path = crate::cmd::demo::default_data_dir()?.join(crate::cmd::demo::API_TOKEN_FILE);
    Ok(conduit_identity::bearer::BearerToken::read(&path)
        .ok()
        .map(|t| t.secret().to_string()))
}

async fn dial(addr: SocketAddr, streaming: bool) -> Result<ApiClient<Channel>, String> {
    let mut endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT);
    if !streaming {
        endpoint = endpoint.timeout(CALL_TIMEOUT);
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        cause.unwrap_or_else(|| e.to_string())
    })?;
    Ok(ApiClient::new(channel))
}

/// Connects for unary calls.
pub(crate) async fn connect(args: &ApiArgs) -> anyhow::Result<Connection> {
    connect_with(args, false).await
}

/// Connects for a stream that may outlive any call timeout (tap, top).
pub(crate) async fn connect_streaming(args: &ApiArgs) -> anyhow::Result<Connection> {
    connect_with(args, true).await
}

async fn connect_with(args: &ApiArgs, streaming: bool) -> anyhow::Result<Connection> {
    if let Some(addr) = args.api_addr {
        // The demo's token goes to this machine's controllers only.
        let credential = local_credential(args, addr.ip().is_loopback())?;
        let client = dial(addr, streaming).await.map_err(|e| {
            anyhow::anyhow!(
                "no Conduit control plane at {addr} ({e}; from --api-addr or CONDUIT_API_ADDR); \
                 start one with `conduit demo`, or run `conduit check`"
            )
        })?;
        return Ok(Connection {
            client,
            target: addr.to_string(),
            forward: None,
            credential,
        });
    }
    let local: SocketAddr = LOCAL_API_ADDR.parse().expect("static address");
    let local_error = match dial(local, streaming).await {
        Ok(client) => {
            return Ok(Connection {
                client,
                target: local.to_string(),
                forward: None,
                credential: local_credential(args, true)?,
            });
        }
        Err(e) => e,
    };
    let kube_error = match forward::to_controller(CONTROLLER_GRPC_PORT).await {
        Ok(fwd) => match dial(fwd.local, streaming).await {
            Ok(client) => {
                let credential = match local_credential(args, false)? {
                    Some(c) => Some(c),
                    None => forward::kube_token().await,
                };
                return Ok(Connection {
                    client,
                    target: fwd.description.clone(),
                    forward: Some(fwd),
                    credential,
                });
            }
            Err(e) => format!("{}: {e}", fwd.description),
        },
        Err(e) => format!("{e:#}"),
    };
    anyhow::bail!(
        "no Conduit control plane found (looked at --api-addr/CONDUIT_API_ADDR: unset; \
         {local}: {local_error}; kubeconfig: {kube_error}); start one with `conduit demo`, \
         or run `conduit check`"
    )
}

/// A gRPC error as one line: the controller's message says what to do.
pub(crate) fn status_error(s: tonic::Status) -> anyhow::Error {
    let message = s.message();
    let message = if message.is_empty() {
        format!("{:?}", s.code())
    } else {
        message.to_string()
    };
    anyhow::anyhow!(message)
}
