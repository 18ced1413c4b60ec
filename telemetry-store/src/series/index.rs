//! The inverted index: for each partition, label name → value → sorted
//! series refs ("postings"), so a selector is answered by intersecting a
//! few sorted lists instead of testing every series.
//!
//! Matchers on `namespace` and `deployment` are first tested against the
//! partition keys, so a Deployment's query never reads another
//! Deployment's postings.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use conduit_api::metrics::label;

use super::hash::FastBuild;
use super::labelset::LabelPairs;
use super::matcher::Matcher;
use super::{PartitionKey, SeriesRef};

/// A series id in postings: the head's [`SeriesRef`]s, or a block's
/// `u32` row numbers (half the memory for every block a store keeps).
pub(crate) trait PostingId: Copy + Ord {}

impl<T: Copy + Ord> PostingId for T {}

#[derive(Default)]
pub(crate) struct Index<R = SeriesRef> {
    partitions: BTreeMap<PartitionKey, Postings<R>>,
    len: usize,
}

struct Postings<R> {
    all: Vec<R>,
    /// Fast-hashed: a selection across every Deployment looks a name and
    /// a value up in each partition.
    by_label: HashMap<String, HashMap<String, Vec<R>, FastBuild>, FastBuild>,
}

impl<R: PostingId> Index<R> {
    pub(crate) fn add(&mut self, r: R, labels: &(impl LabelPairs + ?Sized)) {
        let p = self.partitions.entry(PartitionKey::of(labels)).or_default();
        insert_sorted(&mut p.all, r);
        for (name, value) in labels.label_pairs() {
            // Names and values repeat across series: copy one only the
            // first time it is seen.
            let values = match p.by_label.get_mut(name) {
                Some(values) => values,
                None => p.by_label.entry(name.to_owned()).or_default(),
            };
            let refs = match values.get_mut(value) {
                Some(refs) => refs,
                None => values.entry(value.to_owned()).or_default(),
            };
            insert_sorted(refs, r);
        }
        self.len += 1;
    }

    /// Drops the spare capacity that growing by appends left: a block's
    /// index never changes once built and stays in memory while it lives.
    pub(crate) fn shrink_to_fit(&mut self) {
        for p in self.partitions.values_mut() {
            p.all.shrink_to_fit();
            for values in p.by_label.values_mut() {
                values.values_mut().for_each(Vec::shrink_to_fit);
                values.shrink_to_fit();
            }
            p.by_label.shrink_to_fit();
        }
    }

    pub(crate) fn remove(&mut self, r: R, labels: &(impl LabelPairs + ?Sized)) {
        let key = PartitionKey::of(labels);
        let Some(p) = self.partitions.get_mut(&key) else {
            return;
        };
        if !remove_sorted(&mut p.all, r) {
            return;
        }
        self.len -= 1;
        for (name, value) in labels.label_pairs() {
            let Some(values) = p.by_label.get_mut(name) else {
                continue;
            };
            if let Some(refs) = values.get_mut(value) {
                remove_sorted(refs, r);
                if refs.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                p.by_label.remove(name);
            }
        }
        if p.all.is_empty() {
            self.partitions.remove(&key);
        }
    }

    /// Refs of the series every matcher accepts, sorted.
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Vec<R> {
        let mut out = Vec::new();
        for (key, postings) in &self.partitions {
            if !partition_may_match(key, matchers) {
                continue;
            }
            out.extend(postings.select(key, matchers));
        }
        out.sort_unstable();
        out
    }

    /// Label names of the matching series (all series when `matchers` is
    /// empty).
    pub(crate) fn label_names(&self, matchers: &[Matcher], out: &mut BTreeSet<String>) {
        for (key, p) in &self.partitions {
            if !partition_may_match(key, matchers) {
                continue;
            }
            if matchers.is_empty() {
                out.extend(p.by_label.keys().cloned());
                continue;
            }
            let selected = p.select(key, matchers);
            for (name, values) in &p.by_label {
                if out.contains(name) {
                    continue;
                }
                if values.values().any(|refs| intersects(refs, &selected)) {
                    out.insert(name.clone());
                }
            }
        }
    }

    /// Values of label `name` among the matching series.
    pub(crate) fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        out: &mut BTreeSet<String>,
    ) {
        for (key, p) in &self.partitions {
            if !partition_may_match(key, matchers) {
                continue;
            }
            let Some(values) = p.by_label.get(name) else {
                continue;
            };
            if matchers.is_empty() {
                out.extend(values.keys().cloned());
                continue;
            }
            let selected = p.select(key, matchers);
            for (value, refs) in values {
                if intersects(refs, &selected) {
                    out.insert(value.clone());
                }
            }
        }
    }
}

// By hand: deriving would ask for `R: Default`.
impl<R> Default for Postings<R> {
    fn default() -> Self {
        Self {
            all: Vec::new(),
            by_label: HashMap::default(),
        }
    }
}

impl<R: PostingId> Postings<R> {
    fn select(&self, key: &PartitionKey, matchers: &[Matcher]) -> Vec<R> {
        // Matchers on the partition's own labels were decided by
        // `partition_may_match`: every series here passes them.
        let matchers = matchers.iter().filter(|m| !decided_by_partition(key, m));
        // Matchers that reject the empty value narrow the set to the
        // union of their matching values; intersect from the shortest.
        let (narrowing, widening): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.partition(|m| !m.matches(""));
        let mut lists: Vec<Cow<'_, [R]>> = narrowing
            .iter()
            .map(|m| self.union_matching(m, true))
            .collect();
        lists.sort_by_key(|l| l.len());
        let mut lists = lists.into_iter();
        let mut result = match lists.next() {
            Some(first) => first.into_owned(),
            None => self.all.clone(),
        };
        for list in lists {
            if result.is_empty() {
                return result;
            }
            result = intersect(&result, &list);
        }
        // Matchers that accept the empty value (also missing labels) remove
        // the series whose value they reject.
        for m in widening {
            let rejected = self.union_matching(m, false);
            result = difference(&result, &rejected);
        }
        result
    }

    /// Union of the postings of the values of `m.name` for which
    /// `m.matches(value) == want`; borrowed when it is one list.
    fn union_matching(&self, m: &Matcher, want: bool) -> Cow<'_, [R]> {
        let Some(values) = self.by_label.get(&m.name) else {
            return Cow::Borrowed(&[]);
        };
        if let (super::matcher::MatchKind::Equal, true) = (&m.kind, want) {
            return Cow::Borrowed(values.get(&m.value).map_or(&[], Vec::as_slice));
        }
        let lists: Vec<&Vec<R>> = values
            .iter()
            .filter(|(v, _)| m.matches(v) == want)
            .map(|(_, refs)| refs)
            .collect();
        match lists.len() {
            0 => Cow::Borrowed(&[]),
            1 => Cow::Borrowed(lists[0]),
            _ => {
                let mut all: Vec<R> = lists.into_iter().flatten().copied().collect();
                all.sort_unstable();
                all.dedup();
                Cow::Owned(all)
            }
        }
    }
}

/// True for a matcher on `namespace` or `deployment`, which every series
/// of a partition that `partition_may_match` let through passes.
fn decided_by_partition(key: &PartitionKey, m: &Matcher) -> bool {
    match m.name.as_str() {
        label::NAMESPACE => m.matches(&key.namespace),
        label::DEPLOYMENT => m.matches(&key.deployment),
        _ => false,
    }
}

/// False when the matchers on `namespace`/`deployment` exclude the whole
/// partition.
fn partition_may_match(key: &PartitionKey, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| match m.name.as_str() {
        label::NAMESPACE => m.matches(&key.namespace),
        label::DEPLOYMENT => m.matches(&key.deployment),
        _ => true,
    })
}

fn insert_sorted<R: PostingId>(v: &mut Vec<R>, r: R) {
    match v.last() {
        Some(&last) if last >= r => {
            if let Err(i) = v.binary_search(&r) {
                v.insert(i, r);
            }
        }
        _ => v.push(r),
    }
}

fn remove_sorted<R: PostingId>(v: &mut Vec<R>, r: R) -> bool {
    match v.binary_search(&r) {
        Ok(i) => {
            v.remove(i);
            true
        }
        Err(_) => false,
    }
}

pub(crate) fn intersect<R: PostingId>(a: &[R], b: &[R]) -> Vec<R> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn difference<R: PostingId>(a: &[R], b: &[R]) -> Vec<R> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|x| {
            while j < b.len() && b[j] < *x {
                j += 1;
            }
            !(j < b.len() && b[j] == *x)
        })
        .collect()
}

fn intersects<R: PostingId>(a: &[R], b: &[R]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::Labels;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::try_from_pairs(pairs.iter().copied()).unwrap()
    }

    fn index() -> Index {
        let mut idx = Index::default();
        idx.add(
            1,
            &labels(&[
                ("__name__", "req"),
                ("namespace", "a"),
                ("deployment", "web"),
                ("code", "200"),
            ]),
        );
        idx.add(
            2,
            &labels(&[
                ("__name__", "req"),
                ("namespace", "a"),
                ("deployment", "web"),
                ("code", "500"),
            ]),
        );
        idx.add(
            3,
            &labels(&[
                ("__name__", "req"),
                ("namespace", "b"),
                ("deployment", "db"),
            ]),
        );
        idx.add(4, &labels(&[("__name__", "up")]));
        idx
    }

    #[test]
    fn all_four_matcher_kinds() {
        let idx = index();
        assert_eq!(
            idx.select(&[Matcher::equal("__name__", "req")]),
            vec![1, 2, 3]
        );
        assert_eq!(
            idx.select(&[
                Matcher::equal("__name__", "req"),
                Matcher::not_equal("code", "200")
            ]),
            vec![2, 3]
        );
        assert_eq!(
            idx.select(&[Matcher::regex("code", "2..|5..", false).unwrap()]),
            vec![1, 2]
        );
        assert_eq!(
            idx.select(&[
                Matcher::regex("code", "5..", true).unwrap(),
                Matcher::equal("__name__", "req")
            ]),
            vec![1, 3]
        );
        assert_eq!(idx.select(&[Matcher::equal("code", "")]), vec![3, 4]);
        assert_eq!(idx.select(&[Matcher::equal("deployment", "db")]), vec![3]);
        assert_eq!(idx.select(&[Matcher::equal("namespace", "")]), vec![4]);
    }

    #[test]
    fn removal_and_label_queries() {
        let mut idx = index();
        idx.remove(
            2,
            &labels(&[
                ("__name__", "req"),
                ("namespace", "a"),
                ("deployment", "web"),
                ("code", "500"),
            ]),
        );
        assert_eq!(idx.len, 3);
        let mut values = BTreeSet::new();
        idx.label_values("code", &[], &mut values);
        assert_eq!(values.into_iter().collect::<Vec<_>>(), vec!["200"]);
        let mut names = BTreeSet::new();
        idx.label_names(&[Matcher::equal("__name__", "up")], &mut names);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["__name__"]);
    }
}
