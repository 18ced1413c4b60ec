//! Writes JSON byte for byte as Prometheus' API does: Go's string
//! escaping (`<`, `>`, `&` as `\u003c`…), labels in name order, sample
//! values as strings in Go's float format, timestamps as seconds with
//! milliseconds (`1700000000.5` is written `1700000000.500`).

use std::fmt::Write;

use conduit_api::Labels;
use conduit_api::metrics::label;

use crate::exemplars::Exemplar;
use crate::promql::{QueryValue, Series};

pub(crate) struct Json(String);

impl Json {
    pub(crate) fn new() -> Self {
        Self(String::with_capacity(256))
    }

    pub(crate) fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    pub(crate) fn string(&mut self, s: &str) -> &mut Self {
        self.0.push('"');
        for c in s.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    pub(crate) fn labels(&mut self, labels: &Labels) -> &mut Self {
        self.0.push('{');
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.string(&l.name);
            self.0.push(':');
            self.string(&l.value);
        }
        self.0.push('}');
        self
    }

    pub(crate) fn strings<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.0.push('[');
        for (i, s) in items.into_iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.string(s);
        }
        self.0.push(']');
        self
    }

    /// `[<seconds>,"<value>"]`.
    pub(crate) fn point(&mut self, t: i64, v: f64) -> &mut Self {
        self.0.push('[');
        self.timestamp(t);
        self.0.push_str(",\"");
        self.0.push_str(&format_value(v));
        self.0.push_str("\"]");
        self
    }

    fn timestamp(&mut self, t: i64) {
        let abs = t.unsigned_abs();
        if t < 0 {
            self.0.push('-');
        }
        let _ = write!(self.0, "{}", abs / 1000);
        let frac = abs % 1000;
        if frac != 0 {
            let _ = write!(self.0, ".{frac:03}");
        }
    }

    pub(crate) fn finish(self) -> String {
        self.0
    }
}

/// A sample value as the API writes it: Go's shortest `'f'` format, or
/// `'e'` below 1e-6 and from 1e21 up (as Prometheus' JSON marshaller).
pub(crate) fn format_value(v: f64) -> String {
    let abs = v.abs();
    if abs != 0.0 && abs.is_finite() && !(1e-6..1e21).contains(&abs) {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').expect("LowerExp has an exponent");
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    crate::promql::format_float(v)
}

/// `{"status":"success","data":<data>}`.
pub(crate) fn success(data: impl FnOnce(&mut Json)) -> String {
    let mut j = Json::new();
    j.raw(r#"{"status":"success","data":"#);
    data(&mut j);
    j.raw("}");
    j.finish()
}

/// `{"status":"error","errorType":<type>,"error":<message>}`.
pub(crate) fn error(error_type: &str, message: &str) -> String {
    let mut j = Json::new();
    j.raw(r#"{"status":"error","errorType":"#)
        .string(error_type)
        .raw(r#","error":"#)
        .string(message)
        .raw("}");
    j.finish()
}

/// The `data` of a query response.
pub(crate) fn query_data(j: &mut Json, value: &QueryValue) {
    match value {
        QueryValue::Scalar(t, v) => {
            j.raw(r#"{"resultType":"scalar","result":"#)
                .point(*t, *v)
                .raw("}");
        }
        QueryValue::String(t, s) => {
            j.raw(r#"{"resultType":"string","result":["#);
            j.timestamp(*t);
            j.raw(",").string(s).raw("]}");
        }
        QueryValue::Vector(samples) => {
            j.raw(r#"{"resultType":"vector","result":["#);
            for (i, (metric, t, v)) in samples.iter().enumerate() {
                if i > 0 {
                    j.raw(",");
                }
                j.raw(r#"{"metric":"#)
                    .labels(metric)
                    .raw(r#","value":"#)
                    .point(*t, *v)
                    .raw("}");
            }
            j.raw("]}");
        }
        QueryValue::Matrix(series) => {
            j.raw(r#"{"resultType":"matrix","result":["#);
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    j.raw(",");
                }
                matrix_series(j, s);
            }
            j.raw("]}");
        }
    }
}

/// The `data` of an exemplar query: per series, its exemplars with the
/// request id as `trace_id`.
pub(crate) fn exemplars(j: &mut Json, found: &[(Labels, Vec<Exemplar>)]) {
    j.raw("[");
    for (i, (series, exemplars)) in found.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.raw(r#"{"seriesLabels":"#)
            .labels(series)
            .raw(r#","exemplars":["#);
        for (k, e) in exemplars.iter().enumerate() {
            if k > 0 {
                j.raw(",");
            }
            j.raw(r#"{"labels":{"#)
                .string(label::TRACE_ID)
                .raw(":")
                .string(&e.trace_id)
                .raw(r#"},"value":""#)
                .raw(&format_value(e.value))
                .raw(r#"","timestamp":"#);
            j.timestamp(e.timestamp_ms);
            j.raw("}");
        }
        j.raw("]}");
    }
    j.raw("]");
}

fn matrix_series(j: &mut Json, s: &Series) {
    j.raw(r#"{"metric":"#)
        .labels(&s.metric)
        .raw(r#","values":["#);
    for (i, (t, v)) in s.points.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.point(*t, *v);
    }
    j.raw("]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_times_like_prometheus() {
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_value(123456.0), "123456");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.0), "0");
        let mut j = Json::new();
        j.point(1_700_000_000_500, 2.0)
            .raw(" ")
            .point(1_700_000_000_005, 1.0)
            .raw(" ")
            .point(-1500, 0.0);
        assert_eq!(
            j.finish(),
            r#"[1700000000.500,"2"] [1700000000.005,"1"] [-1.500,"0"]"#
        );
    }

    #[test]
    fn strings_escape_like_go() {
        let mut j = Json::new();
        j.string("a<b>&\"\\\n\u{1}é\u{2028}");
        assert_eq!(j.finish(), r#""a\u003cb\u003e\u0026\"\\\n\u0001é\u2028""#);
    }
}
