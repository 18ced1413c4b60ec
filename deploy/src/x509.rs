//! Just enough X.509 reading to check the identity certificates a user
//! hands to `conduit install`: who issued a certificate, whom it names,
//! when it is valid and which public key it carries. A wrong file caught
//! here is an error at install time instead of proxies failing mTLS later.
//! (rcgen writes certificates; reading them would need its x509-parser
//! feature and a tree of parser crates for four fields.)

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The fields of a DER certificate install checks.
#[derive(Debug)]
pub(crate) struct Certificate<'a> {
    /// DER of the issuer's distinguished name.
    pub(crate) issuer: &'a [u8],
    /// DER of the subject's distinguished name.
    pub(crate) subject: &'a [u8],
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// DER of the SubjectPublicKeyInfo.
    pub(crate) public_key: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

pub(crate) fn parse(der: &[u8]) -> Result<Certificate<'_>, String> {
    let (certificate, _) = expect(der, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(certificate.content, SEQUENCE, "to-be-signed certificate")?;
    let mut rest = tbs.content;
    if rest.first() == Some(&VERSION) {
        rest = tlv(rest)?.1;
    }
    let (_serial, rest) = expect(rest, INTEGER, "serial number")?;
    let (_algorithm, rest) = expect(rest, SEQUENCE, "signature algorithm")?;
    let (issuer, rest) = expect(rest, SEQUENCE, "issuer")?;
    let (validity, rest) = expect(rest, SEQUENCE, "validity")?;
    let (subject, rest) = expect(rest, SEQUENCE, "subject")?;
    let (public_key, _) = expect(rest, SEQUENCE, "public key")?;
    let (not_before, after) = tlv(validity.content)?;
    let (not_after, _) = tlv(after)?;
    Ok(Certificate {
        issuer: issuer.whole,
        subject: subject.whole,
        not_before: time_of(&not_before)?,
        not_after: time_of(&not_after)?,
        public_key: public_key.whole,
    })
}

struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), String> {
    let (element, rest) = tlv(input)?;
    if element.tag != tag {
        return Err(format!("malformed certificate: expected the {what}"));
    }
    Ok((element, rest))
}

fn tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let truncated = || "malformed certificate: truncated".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(truncated)?;
    let (&first, rest) = rest.split_first().ok_or_else(truncated)?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return Err("malformed certificate: bad length".to_string());
        }
        let length = rest[..octets]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, &rest[octets..])
    };
    if rest.len() < length {
        return Err(truncated());
    }
    let header = input.len() - rest.len();
    Ok((
        Tlv {
            tag,
            content: &rest[..length],
            whole: &input[..header + length],
        },
        &rest[length..],
    ))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time_of(element: &Tlv<'_>) -> Result<OffsetDateTime, String> {
    let bad = || "malformed certificate: bad validity time".to_string();
    let text = std::str::from_utf8(element.content).map_err(|_| bad())?;
    let digits = text.strip_suffix('Z').ok_or_else(bad)?;
    let (year, rest) = match (element.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i32 = digits[..2].parse().map_err(|_| bad())?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().map_err(|_| bad())?, &digits[4..]),
        _ => return Err(bad()),
    };
    let field = |i: usize| rest[i..i + 2].parse::<u8>().map_err(|_| bad());
    let month = Month::try_from(field(0)?).map_err(|_| bad())?;
    let date = Date::from_calendar_date(year, month, field(2)?).map_err(|_| bad())?;
    let time = Time::from_hms(field(4)?, field(6)?, field(8)?).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}
