//! Local discovery files for tests, built from the schema the controller
//! reads (`conduit_api::discovery_file`): a test names its Deployments,
//! services and routes instead of indenting YAML by hand, and a typo is a
//! compile error rather than a controller that silently sees nothing.
//!
//! Files are written atomically, because the controller reloads the file
//! the moment it changes and must never read half of one.

use std::net::SocketAddr;
use std::path::Path;

use conduit_api::discovery_file::{self as file, DiscoveryFile};

/// One namespace's Deployments, services and profiles.
pub struct Discovery {
    namespace: String,
    file: DiscoveryFile,
}

impl Discovery {
    pub fn new(namespace: &str) -> Self {
        let mut file = DiscoveryFile::default();
        file.namespaces
            .insert(namespace.to_string(), file::Namespace::default());
        Self {
            namespace: namespace.to_string(),
            file,
        }
    }

    fn namespace(&mut self) -> &mut file::Namespace {
        self.file
            .namespaces
            .get_mut(&self.namespace)
            .expect("created in new")
    }

    /// Deployment `name` with `pods`, under the service account of its name.
    pub fn deployment(mut self, name: &str, pods: Vec<file::Pod>) -> Self {
        let deployment = file::Deployment {
            service_account: name.to_string(),
            pods,
            ..Default::default()
        };
        self.namespace()
            .deployments
            .insert(name.to_string(), deployment);
        self
    }

    /// Service `name` on `port`, served by the Deployment of the same name.
    pub fn service(mut self, name: &str, port: u16) -> Self {
        let service = file::Service {
            deployment: name.to_string(),
            ports: vec![file::ServicePort {
                port,
                target: None,
                protocol: file::Protocol::Http,
            }],
        };
        self.namespace().services.insert(name.to_string(), service);
        self
    }

    /// A profile of `service` whose routes match paths: `(name, regex)`.
    pub fn path_routes(mut self, service: &str, routes: &[(&str, &str)]) -> Self {
        let routes = routes
            .iter()
            .map(|(name, path)| file::Route {
                name: name.to_string(),
                condition: file::RequestMatch::Path(path.to_string()),
                response_classes: Vec::new(),
                retry: None,
                timeout: None,
                metric_labels: Default::default(),
            })
            .collect();
        let profile = file::Profile {
            routes,
            ..Default::default()
        };
        self.namespace()
            .profiles
            .insert(service.to_string(), profile);
        self
    }

    pub fn write(&self, path: &Path) {
        let text = serde_saphyr::to_string(&self.file).expect("a discovery file serializes");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write the discovery file");
        std::fs::rename(tmp, path).expect("replace the discovery file");
    }
}

/// A pod reachable at `addr` with no proxy servers to ask (no tap, no
/// admin): enough for the controller to know its Deployment.
pub fn pod(name: &str, addr: SocketAddr) -> file::Pod {
    file::Pod {
        name: name.to_string(),
        addr,
        meshed: true,
        tap: None,
        admin: None,
        ports: Default::default(),
    }
}
