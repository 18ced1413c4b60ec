//! Routes that discover themselves: path templates learned from the
//! requests an authority receives, so per-route golden metrics exist with
//! no service profile.
//!
//! A request's template is its method and path with every segment that
//! looks like an identifier (a number, a UUID, a hex id, an opaque
//! base64-ish token) replaced by `{id}`: `/api/vote/123` and
//! `/api/vote/456` are both `GET /api/vote/{id}`. The query string never
//! counts. Templates are a pure function of the request, so every proxy
//! calling a Deployment arrives at the same ones and the store adds them up.
//!
//! Learning happens on the outbound side, per authority, beside the
//! profile: that is where the request's route is decided before anything
//! is counted, so a request one of the profile's routes matches is counted
//! under that route and only the rest fall to a learned template, never
//! both. Learned routes thus land in the same `route_*` series, labelled
//! `learned="true"`, that the store, `conduit routes` and the dashboard
//! already read for profile routes. (The server's inbound side would see
//! unmeshed clients too, but it does not know the profile, so it could not
//! let the profile's routes win without counting requests twice.)
//!
//! Clients choose paths, so an authority keeps at most `max` templates
//! (`--learned-routes-max`): a request whose template is new past that, or
//! longer than [`MAX_TEMPLATE_BYTES`], is counted under the authority's one
//! `_overflow` template and in `learned_routes_overflow_total`. A request
//! is looked up by a hash of its template computed from the path as it is,
//! without writing the template out: once a template is known, a request
//! costs that hash, a read lock and a comparison, and no allocation. The
//! hash is a fast multiply-rotate one with a per-process seed rather than
//! SipHash: an authority holds at most `max` templates, so even paths
//! aimed at one bucket cost at most `max` comparisons.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, RwLock};

use conduit_api::metrics::{
    OVERFLOW_LABEL_VALUE, OVERFLOW_REASON_BUDGET, OVERFLOW_REASON_TOO_LONG,
};
use http::Method;

/// Templates per authority at most, by default (`--learned-routes-max`).
pub(crate) const DEFAULT_MAX_TEMPLATES: u32 = 100;
/// A template (method, space and path) longer than this is not learned:
/// a route label that long helps no one read a table.
pub(crate) const MAX_TEMPLATE_BYTES: usize = 256;
/// What an identifier segment reads as in a template.
pub(crate) const ID: &str = "{id}";

/// An opaque token is at least this long; shorter mixed segments (`v1`,
/// `utf8`, `x86`) are names.
const MIN_OPAQUE_LEN: usize = 16;
/// A hex id is at least this long; shorter hex (`cafe`, `add`, `a1`) is
/// as likely a word.
const MIN_HEX_LEN: usize = 8;

/// Whether a path segment names one thing among many (and becomes `{id}`)
/// rather than a kind of thing.
pub(crate) fn is_id(segment: &str) -> bool {
    let b = segment.as_bytes();
    !b.is_empty() && (is_number(b) || is_uuid(b) || is_hex_id(b) || is_opaque(b))
}

/// `123`, `3.14`, `2024-01-31`, `12:30`: digits with separators.
fn is_number(b: &[u8]) -> bool {
    b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_' | b':'))
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Hex digits, a digit among them (`deadbeef` and `facade` are words too).
fn is_hex_id(b: &[u8]) -> bool {
    b.len() >= MIN_HEX_LEN
        && b.iter().all(u8::is_ascii_hexdigit)
        && b.iter().any(u8::is_ascii_digit)
}

/// A long token of base64 (or base64url) characters mixing letters and
/// digits. With `-` or `_` in it, it must mix cases too: a lower-case
/// slug with a year in it (`release-notes-2024`) is a name.
fn is_opaque(b: &[u8]) -> bool {
    if b.len() < MIN_OPAQUE_LEN
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'=' | b'-' | b'_'))
    {
        return false;
    }
    let has = |f: fn(&u8) -> bool| b.iter().any(f);
    let mixed = has(u8::is_ascii_digit) && has(u8::is_ascii_alphabetic);
    let separated = has(|c| matches!(c, b'-' | b'_'));
    mixed && (!separated || (has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase)))
}

/// The segments of a path after its leading `/`.
fn segments(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// The template of a request, written out.
pub(crate) fn template(method: &Method, path: &str) -> String {
    let mut t = String::with_capacity(method.as_str().len() + 1 + path.len());
    t.push_str(method.as_str());
    t.push(' ');
    for s in segments(path) {
        t.push('/');
        t.push_str(if is_id(s) { ID } else { s });
    }
    t
}

/// Whether `path` has the template whose path part is `template`.
fn matches(template: &str, path: &str) -> bool {
    let mut t = segments(template);
    let mut p = segments(path);
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ID), Some(s)) if is_id(s) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The series a request is counted in.
pub(crate) enum Lookup<T> {
    Own(Arc<T>),
    /// Counted under the overflow template, for this reason.
    Overflow(&'static str, Arc<T>),
}

/// One authority's learned templates, each with its series (`T`).
pub(crate) struct LearnedRoutes<T> {
    max: usize,
    seed: u64,
    known: RwLock<Known<T>>,
}

struct Known<T> {
    /// By the hash of the template, as [`LearnedRoutes::hash`] computes it
    /// from a request without writing the template out.
    by_hash: HashMap<u64, Vec<Template<T>>, BuildHasherDefault<AsIs>>,
    len: usize,
    overflow: Option<Arc<T>>,
}

struct Template<T> {
    /// Compared as a `Method`: no string comparison for the usual ones.
    method: Method,
    /// `METHOD /path/{id}`.
    route: Box<str>,
    series: Arc<T>,
}

impl<T> Template<T> {
    fn is_of(&self, method: &Method, path: &str) -> bool {
        let template = &self.route[self.method.as_str().len() + 1..];
        self.method == *method && matches(template, path)
    }
}

impl<T> LearnedRoutes<T> {
    /// Learns up to `max` templates; none (and no learned route) at 0.
    pub(crate) fn new(max: u32) -> Self {
        Self {
            max: max as usize,
            seed: RandomState::new().hash_one(0u64),
            known: RwLock::new(Known {
                by_hash: HashMap::default(),
                len: 0,
                overflow: None,
            }),
        }
    }

    /// The series of a request's template, made by `make` (given the
    /// route) when the template is new; `None` when learning is off.
    pub(crate) fn lookup(
        &self,
        method: &Method,
        path: &str,
        make: impl FnOnce(&str) -> Arc<T>,
    ) -> Option<Lookup<T>> {
        if self.max == 0 {
            return None;
        }
        let (hash, len) = self.hash(method, path);
        if len > MAX_TEMPLATE_BYTES {
            return Some(self.overflow(OVERFLOW_REASON_TOO_LONG, make));
        }
        let find = |k: &Known<T>| {
            k.by_hash
                .get(&hash)?
                .iter()
                .find(|t| t.is_of(method, path))
                .map(|t| t.series.clone())
        };
        if let Some(series) = find(&read(&self.known)) {
            return Some(Lookup::Own(series));
        }
        let mut known = write(&self.known);
        if let Some(series) = find(&known) {
            return Some(Lookup::Own(series));
        }
        if known.len >= self.max {
            drop(known);
            return Some(self.overflow(OVERFLOW_REASON_BUDGET, make));
        }
        let route = template(method, path);
        let series = make(&route);
        known.len += 1;
        known.by_hash.entry(hash).or_default().push(Template {
            method: method.clone(),
            route: route.into(),
            series: series.clone(),
        });
        Some(Lookup::Own(series))
    }

    fn overflow(&self, reason: &'static str, make: impl FnOnce(&str) -> Arc<T>) -> Lookup<T> {
        if let Some(series) = &read(&self.known).overflow {
            return Lookup::Overflow(reason, series.clone());
        }
        let mut known = write(&self.known);
        let series = known
            .overflow
            .get_or_insert_with(|| make(OVERFLOW_LABEL_VALUE));
        Lookup::Overflow(reason, series.clone())
    }

    /// The hash of a request's template and the template's length, from
    /// its segments as they are.
    fn hash(&self, method: &Method, path: &str) -> (u64, usize) {
        let mut h = Mix(self.seed);
        h.bytes(method.as_str().as_bytes());
        let mut len = method.as_str().len() + 1;
        for s in segments(path) {
            // The marker keeps `{id}` apart from a literal segment.
            if is_id(s) {
                h.word(1);
                len += 1 + ID.len();
            } else {
                h.word(0);
                h.bytes(s.as_bytes());
                len += 1 + s.len();
            }
        }
        (h.0, len)
    }

    /// The templates learned so far, sorted.
    #[cfg(test)]
    fn routes(&self) -> Vec<String> {
        let mut r: Vec<String> = read(&self.known)
            .by_hash
            .values()
            .flatten()
            .map(|t| t.route.to_string())
            .collect();
        r.sort();
        r
    }
}

/// A seeded multiply-rotate hash over 8-byte words (FxHash's step).
struct Mix(u64);

impl Mix {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(Self::K);
    }

    /// The bytes and their length, so `ab`,`c` and `a`,`bc` differ.
    fn bytes(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(last));
        self.word(b.len() as u64);
    }
}

/// The map's keys are hashes already.
#[derive(Default)]
struct AsIs(u64);

impl Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A poisoned lock only means a panic elsewhere mid-update; the templates
/// are still whole (each is pushed in one step).
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The learner as the proxy runs it on the hot path, for the benchmark in
/// `load-tests/`: one authority's learner with `max` templates is asked
/// for each of `paths` (GET) in turn, `rounds` times; returns how many
/// requests were counted under a template of their own.
#[doc(hidden)]
pub fn bench_lookups(max: u32, paths: &[String], rounds: usize) -> usize {
    let learned = LearnedRoutes::<()>::new(max);
    let mut own = 0;
    for _ in 0..rounds {
        for p in paths {
            let found = learned.lookup(&Method::GET, std::hint::black_box(p), |_| Arc::new(()));
            if let Some(Lookup::Own(_)) = found {
                own += 1;
            }
        }
    }
    own
}

/// The benchmark's peer: a learner keyed by template strings, which
/// writes each request's template out and looks it up (SipHash) under a
/// lock, learning up to `max`; returns how many requests had a template
/// of their own.
#[doc(hidden)]
pub fn bench_string_keyed(max: u32, paths: &[String], rounds: usize) -> usize {
    let known = std::sync::Mutex::new(HashMap::<String, Arc<()>>::new());
    let mut own = 0;
    for _ in 0..rounds {
        for p in paths {
            let t = template(&Method::GET, std::hint::black_box(p));
            let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(series) = known.get(&t) {
                std::hint::black_box(series.clone());
                own += 1;
            } else if known.len() < max as usize {
                known.insert(t, Arc::new(()));
                own += 1;
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_told_from_names() {
        for id in [
            "123",
            "0",
            "3.14",
            "2024-01-31",
            "12:30",
            "550e8400-e29b-41d4-a716-446655440000",
            "5f2b9c1a",
            "d41d8cd98f00b204e9800998ecf8427e",
            "dGhpcyBpcyBhIHRva2Vu1",
            "aGVsbG8-d29ybGQ_MTIz",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert!(is_id(id), "{id} is an identifier");
        }
        for name in [
            "vote",
            "api",
            "v1",
            "v2beta1",
            "leaderboard",
            "deadbeef",
            "cafe",
            "a1b2",
            "release-notes-2024",
            "x86_64",
            "utf8",
            "index.html",
            "",
            "{id}",
            "550e8400-e29b-41d4-a716-44665544000g",
        ] {
            assert!(!is_id(name), "{name:?} is a name");
        }
    }

    #[test]
    fn templates_replace_identifiers_and_keep_methods_apart() {
        assert_eq!(
            template(&Method::GET, "/api/vote/123"),
            "GET /api/vote/{id}"
        );
        assert_eq!(template(&Method::POST, "/"), "POST /");
        assert_eq!(
            template(&Method::DELETE, "/users/5f2b9c1a/keys/9"),
            "DELETE /users/{id}/keys/{id}"
        );
        let learned = LearnedRoutes::<String>::new(10);
        let get = |m: &Method, p: &str| match learned.lookup(m, p, |r| Arc::new(r.to_string())) {
            Some(Lookup::Own(s)) => s.to_string(),
            _ => panic!("{m} {p} not learned"),
        };
        assert_eq!(get(&Method::GET, "/api/vote/123"), "GET /api/vote/{id}");
        assert_eq!(get(&Method::GET, "/api/vote/456"), "GET /api/vote/{id}");
        assert_eq!(get(&Method::POST, "/api/vote/7"), "POST /api/vote/{id}");
        assert_eq!(get(&Method::GET, "/api/vote"), "GET /api/vote");
        assert_eq!(get(&Method::GET, "/api/vote/"), "GET /api/vote/");
        assert_eq!(
            learned.routes(),
            [
                "GET /api/vote",
                "GET /api/vote/",
                "GET /api/vote/{id}",
                "POST /api/vote/{id}"
            ]
        );
    }

    #[test]
    fn past_the_budget_templates_share_the_overflow() {
        let learned = LearnedRoutes::<String>::new(2);
        let get = |p: &str| learned.lookup(&Method::GET, p, |r| Arc::new(r.to_string()));
        assert!(matches!(get("/a/1"), Some(Lookup::Own(_))));
        assert!(matches!(get("/b"), Some(Lookup::Own(_))));
        for p in ["/c", "/d/2", "/e"] {
            let Some(Lookup::Overflow(reason, s)) = get(p) else {
                panic!("{p} learned past the budget");
            };
            assert_eq!((reason, s.as_str()), ("budget", OVERFLOW_LABEL_VALUE));
        }
        assert!(
            matches!(get("/a/99"), Some(Lookup::Own(_))),
            "known templates stay"
        );
        let long = format!("/{}", "x".repeat(MAX_TEMPLATE_BYTES));
        let fresh = LearnedRoutes::<String>::new(10);
        let Some(Lookup::Overflow(reason, _)) =
            fresh.lookup(&Method::GET, &long, |r| Arc::new(r.to_string()))
        else {
            panic!("a template over {MAX_TEMPLATE_BYTES} bytes was learned");
        };
        assert_eq!(reason, "too_long");
        let long_id = format!("/files/{}", "7".repeat(1000));
        assert!(
            matches!(
                fresh.lookup(&Method::GET, &long_id, |r| Arc::new(r.to_string())),
                Some(Lookup::Own(_))
            ),
            "a long id makes a short template"
        );
        assert!(
            LearnedRoutes::<String>::new(0)
                .lookup(&Method::GET, "/a", |r| Arc::new(r.to_string()))
                .is_none()
        );
    }
}
