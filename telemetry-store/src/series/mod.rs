//! The series model: a label set names a series, a [`SeriesRef`] is its
//! short handle, and the [`index`] finds series by label matchers.
//!
//! Every series belongs to one partition, its Deployment (the `namespace`
//! and `deployment` labels); series without them share one partition.
//! Queries about one Deployment therefore only walk that Deployment's
//! postings, however many other Deployments the store holds.

pub(crate) mod hash;
pub(crate) mod index;
pub(crate) mod labelset;
pub(crate) mod matcher;

pub(crate) use index::Index;
pub(crate) use labelset::LabelsExt;
pub(crate) use matcher::Matcher;

pub(crate) use crate::model::SeriesRef;

/// The metric name label.
pub(crate) const METRIC_NAME: &str = "__name__";

/// Which Deployment a series is about: `(namespace, deployment)`, both
/// empty for the shared partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PartitionKey {
    pub(crate) namespace: String,
    pub(crate) deployment: String,
}

impl PartitionKey {
    pub(crate) fn of(labels: &(impl labelset::LabelLookup + ?Sized)) -> Self {
        use conduit_api::metrics::label;
        Self {
            namespace: labels
                .label(label::NAMESPACE)
                .unwrap_or_default()
                .to_string(),
            deployment: labels
                .label(label::DEPLOYMENT)
                .unwrap_or_default()
                .to_string(),
        }
    }
}
