//! The tap index's fields: what a tap event is searched by, and how it is
//! stored (the event's own protobuf, so search returns it unchanged).

use conduit_api::proto::mesh::v1::{DeploymentRef, Direction};
use conduit_api::proto::tap::v1::{Peer, TapEvent};
use prost::Message;
use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, Field, INDEXED, NumericOptions, STORED, STRING, Schema, SchemaBuilder, TEXT, Value,
};

/// The fields, by the names queries use.
#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub(crate) time: Field,
    pub(crate) direction: Field,
    pub(crate) src_deployment: Field,
    pub(crate) src_namespace: Field,
    pub(crate) src_identity: Field,
    pub(crate) dst_deployment: Field,
    pub(crate) dst_namespace: Field,
    pub(crate) dst_identity: Field,
    pub(crate) tls: Field,
    pub(crate) method: Field,
    pub(crate) authority: Field,
    pub(crate) path: Field,
    pub(crate) status: Field,
    pub(crate) grpc_status: Field,
    pub(crate) latency_ms: Field,
    pub(crate) duration_ms: Field,
    pub(crate) request_bytes: Field,
    pub(crate) response_bytes: Field,
    pub(crate) request_id: Field,
    pub(crate) error: Field,
    /// Why the proxy kept the event: `sampled`, `failed` or `slow`.
    pub(crate) kept: Field,
    /// The closed-set cause (`fail_fast`, `breaker_open`...), exact.
    pub(crate) error_reason: Field,
    pub(crate) event: Field,
}

/// Name of the time field: Unix milliseconds of the request's start.
pub(crate) const TIME: &str = "time";

impl Fields {
    pub(crate) fn schema() -> (Schema, Fields) {
        let mut b = SchemaBuilder::new();
        let num = || NumericOptions::default().set_indexed().set_stored();
        let fields = Fields {
            time: b.add_i64_field(TIME, num().set_fast()),
            direction: b.add_text_field("direction", STRING | STORED),
            src_deployment: b.add_text_field("src_deployment", STRING),
            src_namespace: b.add_text_field("src_namespace", STRING),
            src_identity: b.add_text_field("src_identity", STRING),
            dst_deployment: b.add_text_field("dst_deployment", STRING),
            dst_namespace: b.add_text_field("dst_namespace", STRING),
            dst_identity: b.add_text_field("dst_identity", STRING),
            tls: b.add_bool_field("tls", INDEXED),
            method: b.add_text_field("method", STRING),
            authority: b.add_text_field("authority", STRING),
            path: b.add_text_field("path", STRING),
            status: b.add_u64_field("status", num() | FAST),
            grpc_status: b.add_i64_field("grpc_status", num()),
            latency_ms: b.add_f64_field("latency_ms", num()),
            duration_ms: b.add_f64_field("duration_ms", num()),
            request_bytes: b.add_u64_field("request_bytes", num()),
            response_bytes: b.add_u64_field("response_bytes", num()),
            request_id: b.add_text_field("request_id", STRING),
            error: b.add_text_field("error", TEXT),
            kept: b.add_text_field("kept", STRING),
            error_reason: b.add_text_field("error_reason", STRING),
            event: b.add_bytes_field("event", STORED),
        };
        (b.build(), fields)
    }

    /// Fields a bare term (no `field:`) searches.
    pub(crate) fn defaults(&self) -> Vec<Field> {
        vec![
            self.path,
            self.authority,
            self.method,
            self.src_deployment,
            self.dst_deployment,
            self.request_id,
            self.error,
            self.error_reason,
        ]
    }

    pub(crate) fn document(&self, e: &TapEvent) -> TantivyDocument {
        let mut d = TantivyDocument::new();
        d.add_i64(self.time, time_ms(e));
        d.add_text(self.direction, direction(e));
        let peer = |p: &Option<Peer>| -> (String, String, String) {
            let p = p.clone().unwrap_or_default();
            let dep: DeploymentRef = p.deployment.unwrap_or_default();
            (dep.name, dep.namespace, p.identity)
        };
        let (sd, sn, si) = peer(&e.source);
        let (dd, dn, di) = peer(&e.destination);
        for (f, v) in [
            (self.src_deployment, sd),
            (self.src_namespace, sn),
            (self.src_identity, si),
            (self.dst_deployment, dd),
            (self.dst_namespace, dn),
            (self.dst_identity, di),
        ] {
            if !v.is_empty() {
                d.add_text(f, v);
            }
        }
        d.add_bool(self.tls, e.tls);
        d.add_text(self.method, &e.method);
        d.add_text(self.authority, &e.authority);
        d.add_text(self.path, &e.path);
        d.add_u64(self.status, u64::from(e.http_status));
        if let Some(g) = e.grpc_status {
            d.add_i64(self.grpc_status, i64::from(g));
        }
        d.add_f64(self.latency_ms, e.response_latency_us as f64 / 1000.0);
        d.add_f64(self.duration_ms, e.response_duration_us as f64 / 1000.0);
        d.add_u64(self.request_bytes, e.request_bytes);
        d.add_u64(self.response_bytes, e.response_bytes);
        if !e.request_id.is_empty() {
            d.add_text(self.request_id, &e.request_id);
        }
        if !e.error.is_empty() {
            d.add_text(self.error, &e.error);
        }
        if let Some(kept) = e.kept().name() {
            d.add_text(self.kept, kept);
        }
        if !e.error_reason.is_empty() {
            d.add_text(self.error_reason, &e.error_reason);
        }
        d.add_bytes(self.event, &e.encode_to_vec());
        d
    }

    /// The event a stored document holds.
    pub(crate) fn event(&self, d: &TantivyDocument) -> Option<TapEvent> {
        let bytes = d.get_first(self.event)?.as_bytes()?;
        TapEvent::decode(bytes).ok()
    }
}

pub(crate) fn time_ms(e: &TapEvent) -> i64 {
    e.request_start_unix_us.div_euclid(1000)
}

pub(crate) fn direction(e: &TapEvent) -> &'static str {
    match Direction::try_from(e.direction) {
        Ok(Direction::Inbound) => "inbound",
        Ok(Direction::Outbound) => "outbound",
        _ => "unspecified",
    }
}

/// The JSON form of an event that the HTTP API returns.
pub(crate) fn json(e: &TapEvent) -> serde_json::Value {
    let peer = |p: &Option<Peer>| {
        let p = p.clone().unwrap_or_default();
        let d = p.deployment.unwrap_or_default();
        let addr = p.address.map(|a| {
            let ip: Option<std::net::IpAddr> = match a.ip.len() {
                4 => <[u8; 4]>::try_from(a.ip.as_slice()).ok().map(Into::into),
                16 => <[u8; 16]>::try_from(a.ip.as_slice()).ok().map(Into::into),
                _ => None,
            };
            ip.map(|ip| std::net::SocketAddr::new(ip, a.port as u16).to_string())
        });
        serde_json::json!({
            "deployment": d.name,
            "namespace": d.namespace,
            "identity": p.identity,
            "address": addr.flatten(),
        })
    };
    serde_json::json!({
        "time_ms": time_ms(e),
        "request_id": e.request_id,
        "direction": direction(e),
        "source": peer(&e.source),
        "destination": peer(&e.destination),
        "tls": e.tls,
        "method": e.method,
        "scheme": e.scheme,
        "authority": e.authority,
        "path": e.path,
        "status": e.http_status,
        "grpc_status": e.grpc_status,
        "latency_ms": e.response_latency_us as f64 / 1000.0,
        "duration_ms": e.response_duration_us as f64 / 1000.0,
        "request_bytes": e.request_bytes,
        "response_bytes": e.response_bytes,
        "error": e.error,
        "kept": e.kept().name(),
        "error_reason": e.error_reason,
    })
}
