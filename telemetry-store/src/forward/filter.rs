//! Which series are forwarded and with which labels: `--remote-write-match`
//! selectors (any may match; none given forwards everything), then
//! `--remote-write-drop-label` and `--remote-write-external-label`.

use conduit_api::Labels;
use conduit_api::labels::is_valid_name;

use crate::series::{LabelsExt, Matcher};

#[derive(Default)]
pub(crate) struct Filter {
    selectors: Vec<Vec<Matcher>>,
    drop: Vec<String>,
    external: Vec<(String, String)>,
}

impl Filter {
    pub(crate) fn parse(
        matches: &[String],
        drop: &[String],
        external: &[String],
    ) -> Result<Self, String> {
        let mut selectors = Vec::new();
        for m in matches {
            match crate::promql::parse(m) {
                Ok(promql_parser::parser::Expr::VectorSelector(vs)) => {
                    selectors.push(
                        crate::promql::selector_matchers(&vs)
                            .map_err(|e| format!("--remote-write-match {m:?}: {e}"))?,
                    );
                }
                Ok(_) => {
                    return Err(format!(
                        "--remote-write-match {m:?} is not a series selector"
                    ));
                }
                Err(e) => return Err(format!("--remote-write-match {m:?}: {e}")),
            }
        }
        for d in drop {
            if !is_valid_name(d) {
                return Err(format!(
                    "--remote-write-drop-label {d:?} is not a valid label name"
                ));
            }
        }
        let mut ext = Vec::new();
        for e in external {
            ext.push(
                conduit_api::labels::parse_pair(e)
                    .map_err(|why| format!("--remote-write-external-label {why}"))?,
            );
        }
        Ok(Self {
            selectors,
            drop: drop.to_vec(),
            external: ext,
        })
    }

    /// The labels to send, or `None` when the series is not forwarded.
    pub(crate) fn apply(&self, labels: &Labels) -> Option<Labels> {
        let selected = self.selectors.is_empty()
            || self.selectors.iter().any(|ms| {
                ms.iter()
                    .all(|m| m.matches(labels.get(&m.name).unwrap_or_default()))
            });
        if !selected {
            return None;
        }
        let names: Vec<&str> = self.drop.iter().map(String::as_str).collect();
        let mut out = labels.without(&names);
        for (n, v) in &self.external {
            if out.get(n).is_none() {
                out.insert(n.clone(), v.clone());
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_drops_and_adds() {
        let f = Filter::parse(
            &[
                "request_total{direction=\"inbound\"}".into(),
                "{__name__=~\"tcp_.*\"}".into(),
            ],
            &["pod".into()],
            &["cluster=eu-1".into()],
        )
        .unwrap();
        let l = |pairs: &[(&str, &str)]| Labels::try_from_pairs(pairs.iter().copied()).unwrap();
        let kept = f.apply(&l(&[
            ("__name__", "request_total"),
            ("direction", "inbound"),
            ("pod", "p1"),
        ]));
        assert_eq!(
            kept,
            Some(l(&[
                ("__name__", "request_total"),
                ("cluster", "eu-1"),
                ("direction", "inbound")
            ]))
        );
        assert!(
            f.apply(&l(&[
                ("__name__", "request_total"),
                ("direction", "outbound")
            ]))
            .is_none()
        );
        assert!(f.apply(&l(&[("__name__", "tcp_open_total")])).is_some());
        assert!(Filter::parse(&["rate(x[5m])".into()], &[], &[]).is_err());
        assert!(Filter::parse(&[], &["bad-name".into()], &[]).is_err());
        assert!(Filter::parse(&[], &[], &["novalue".into()]).is_err());
    }
}
