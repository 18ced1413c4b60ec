//! Grafana dashboards for the mesh (`deploy/grafana/*.json`), reading the
//! telemetry store through Grafana's Prometheus data source. `conduit
//! install` ships them as a ConfigMap; [`queries`] lists their PromQL so
//! tests can run every one against the real store.

/// The dashboards, by file name.
pub const DASHBOARDS: &[(&str, &str)] = &[
    (
        "conduit-deployments.json",
        include_str!("../grafana/conduit-deployments.json"),
    ),
    (
        "conduit-deployment.json",
        include_str!("../grafana/conduit-deployment.json"),
    ),
];

/// One PromQL expression of a dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub dashboard: &'static str,
    /// Panel title, or `variable NAME` for a template variable.
    pub panel: String,
    /// As written, with Grafana's `$variables`.
    pub expr: String,
}

/// Every PromQL expression of every dashboard: panel targets, and the
/// selectors of `label_values(...)` template variables.
pub fn queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (file, json) in DASHBOARDS {
        let dashboard: serde_json::Value =
            serde_json::from_str(json).expect("dashboards are checked-in JSON");
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(Query {
                    dashboard: file,
                    panel: panel["title"].as_str().unwrap_or("").to_string(),
                    expr: target["expr"].as_str().unwrap_or("").to_string(),
                });
            }
        }
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let query = variable["query"]["query"].as_str().unwrap_or("");
            if let Some(selector) = label_values_selector(query) {
                out.push(Query {
                    dashboard: file,
                    panel: format!("variable {}", variable["name"].as_str().unwrap_or("")),
                    expr: selector.to_string(),
                });
            }
        }
    }
    out
}

/// `label_values(request_total{ns="x"}, deployment)` → `request_total{ns="x"}`.
fn label_values_selector(query: &str) -> Option<&str> {
    let inner = query.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_panel_has_a_query_and_variables_are_found() {
        let queries = queries();
        assert!(queries.iter().all(|q| !q.expr.is_empty()), "{queries:#?}");
        assert!(
            queries.iter().any(|q| q.panel == "variable deployment"
                && q.expr == r#"request_total{namespace="$namespace"}"#),
            "{queries:#?}"
        );
        let panels = queries
            .iter()
            .filter(|q| !q.panel.starts_with("variable"))
            .count();
        assert_eq!(panels, 4 + 10);
    }
}
