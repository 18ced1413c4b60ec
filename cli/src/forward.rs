//! Reaching a controller in Kubernetes: a port-forward, through the kube
//! client, from a local port to the controller pod of the current
//! kubeconfig context, as `kubectl port-forward` does.

use std::net::SocketAddr;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Where `conduit install` puts the control plane, and how it labels the
/// controller's pods.
pub(crate) const NAMESPACE: &str = "conduit";
pub(crate) const CONTROLLER_SELECTOR: &str = "conduit.io/control-plane-component=controller";

/// A local listener forwarding to a pod port; stops when dropped.
pub(crate) struct Forward {
    pub(crate) local: SocketAddr,
    pub(crate) description: String,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bearer token of the current kubeconfig context (or the in-cluster
/// ServiceAccount), which the controller reviews before it lets the caller
/// tap; `None` for contexts that authenticate otherwise (client
/// certificates, exec plugins).
pub(crate) async fn kube_token() -> Option<String> {
    use secrecy::ExposeSecret;
    let config = kube::Config::infer().await.ok()?;
    let auth = config.auth_info;
    if let Some(token) = auth.token {
        return Some(token.expose_secret().to_string());
    }
    let file = auth.token_file?;
    let token = std::fs::read_to_string(file).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

/// Forwards a local port to `port` of a running controller pod.
pub(crate) async fn to_controller(port: u16) -> anyhow::Result<Forward> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("no usable kubeconfig or in-cluster config ({e})"))?;
    let context = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let list = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        pods.list(&ListParams::default().labels(CONTROLLER_SELECTOR)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the Kubernetes API at {context} did not answer"))?
    .with_context(|| format!("cannot list pods in namespace {NAMESPACE} at {context}"))?;
    let pod = list
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .find_map(|p| p.metadata.name)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no running controller pod in namespace {NAMESPACE} at {context}; \
                 install the control plane with `conduit install | kubectl apply -f -`"
            )
        })?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let description = format!("{NAMESPACE}/{pod}:{port} via port-forward on {local}");
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let pods = pods.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                let Ok(mut pf) = pods.portforward(&pod, &[port]).await else {
                    return;
                };
                if let Some(mut upstream) = pf.take_stream(port) {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                }
            });
        }
    });
    Ok(Forward {
        local,
        description,
        task,
    })
}
