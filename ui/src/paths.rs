//! The dashboard's URLs, in one place so links and routes agree.
//!
//! - `/`                         overview (`?ns=`, `?sort=`, `?dir=`)
//! - `/deployments/NS/NAME`      one Deployment, live (`?range=5m|15m|1h`) or
//!   over a fixed window (`?since=&until=`, how long ago or RFC 3339)
//! - `/tap`, `/tap/NS/NAME`      live requests (`?path=&method=&to=&authority=`,
//!   history search `?q=&since=`)
//! - `/top`, `/top/NS/NAME`      live top paths

fn segment(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

pub(crate) fn deployment(namespace: &str, name: &str) -> String {
    format!("/deployments/{}/{}", segment(namespace), segment(name))
}

pub(crate) fn tap(namespace: &str, name: &str) -> String {
    format!("/tap/{}/{}", segment(namespace), segment(name))
}

pub(crate) fn top(namespace: &str, name: &str) -> String {
    format!("/top/{}/{}", segment(namespace), segment(name))
}
