//! Wire types of the CVE-Pro REST API, one module per endpoint, and the strict decoder they
//! share.
//!
//! The structs mirror the recorded payloads (contract A2, A4, A5) for every field vetric
//! *reads*; such a field missing or of the wrong type is [`CveProError::ShapeChanged`] with the
//! JSON path, never an empty list or a default (this is the bug that once showed 0 chargers).
//! Nullable fields (per the contract tables) are `Option`, but must still be *present*: a
//! field that disappears is a shape change even when its value is usually null.
//!
//! Fields vetric does not read may come and go. Keys that were not in the recorded payloads at
//! all are counted as "unknown fields" (a metric and the snapshot report) so that a vendor
//! release is noticed before it breaks something.

pub mod chargepoints;
pub mod login;
pub mod transaction;

use crate::error::{CveProError, excerpt};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::error::Category;

/// Keys seen in the recorded payloads, per object. The context is the JSON path of the object
/// with array indexes written `[]` (`""` is the top level).
pub type KnownKeys = &'static [(&'static str, &'static [&'static str])];

/// A decoded payload plus the unknown keys met on the way (one entry per occurrence, as a
/// normalised path such as `chargePointList[].connectors[].newField`).
#[derive(Debug)]
pub struct Decoded<T> {
    pub value: T,
    pub unknown_fields: Vec<String>,
}

/// For `Option` fields that must be present but may be null. (Serde treats a missing
/// `Option` field as `None` unless a `deserialize_with` is given, which makes it required.)
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// The `{"error": …}` member every CVE-Pro response carries. Read leniently, before the strict
/// decode, so that a vendor-reported error is shown as such rather than as a shape change.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The vendor's own error message in a response body, if it is a JSON object whose `error`
/// is a non-empty string.
pub fn vendor_error(body: &[u8]) -> Option<String> {
    let env: Envelope = serde_json::from_slice(body).ok()?;
    match env.error? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s),
        _ => None,
    }
}

/// Writes a path as `chargePointList[].connectors[].lastStatus` (indices folded to `[]`, so
/// every element of a list shares one context).
fn write_path(path: &serde_ignored::Path<'_>, out: &mut String) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, .. } => {
            write_path(parent, out);
            out.push_str("[]");
        }
        Path::Map { parent, key } => {
            write_path(parent, out);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => write_path(parent, out),
    }
}

/// Is an ignored key one of the recorded ones? Returns the normalised path when it is not.
///
/// Called once for every field vetric does not read (about 40 per charger), so the common
/// case, a recorded key, allocates nothing: the context is written into a reused buffer.
fn unknown_key(path: &serde_ignored::Path<'_>, known: KnownKeys) -> Option<String> {
    use serde_ignored::Path;
    thread_local! {
        static CONTEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    let mut leaf = path;
    while let Path::Some { parent }
    | Path::NewtypeStruct { parent }
    | Path::NewtypeVariant { parent } = leaf
    {
        leaf = parent;
    }
    let Path::Map { parent, key } = leaf else {
        let mut full = String::new();
        write_path(path, &mut full);
        return Some(full);
    };
    let is_known = CONTEXT.with(|buf| {
        let mut context = buf.borrow_mut();
        context.clear();
        write_path(parent, &mut context);
        known
            .iter()
            .any(|(ctx, keys)| *ctx == context.as_str() && keys.contains(&key.as_str()))
    });
    if is_known {
        return None;
    }
    let mut full = String::new();
    write_path(path, &mut full);
    Some(full)
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.split_once("missing field `")?.1;
    Some(rest.split_once('`')?.0)
}

/// Strictly decodes a 2xx body of `endpoint`.
pub fn decode<T: DeserializeOwned>(
    endpoint: &'static str,
    body: &[u8],
    known: KnownKeys,
) -> Result<Decoded<T>, CveProError> {
    let mut unknown_fields = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| {
        if let Some(p) = unknown_key(&path, known) {
            unknown_fields.push(p);
        }
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    let result: Result<T, _> = {
        let ignoring = serde_ignored::Deserializer::new(&mut json, &mut on_ignored);
        serde_path_to_error::deserialize(ignoring)
    };
    let value = match result {
        Ok(v) => v,
        Err(err) => return Err(classify(endpoint, body, err)),
    };
    // Trailing garbage after the JSON value.
    if let Err(e) = json.end() {
        return Err(malformed(endpoint, body, &e));
    }
    Ok(Decoded {
        value,
        unknown_fields,
    })
}

fn malformed(endpoint: &'static str, body: &[u8], e: &serde_json::Error) -> CveProError {
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &body[i..]);
    let detail = if trimmed.is_empty() {
        "empty body".to_owned()
    } else if trimmed.first() == Some(&b'<') {
        format!("HTML instead of JSON ({e})")
    } else {
        format!("not valid JSON ({e})")
    };
    CveProError::MalformedBody {
        endpoint,
        detail,
        excerpt: excerpt(trimmed),
    }
}

fn classify(
    endpoint: &'static str,
    body: &[u8],
    err: serde_path_to_error::Error<serde_json::Error>,
) -> CveProError {
    match err.inner().classify() {
        Category::Syntax | Category::Eof | Category::Io => malformed(endpoint, body, err.inner()),
        Category::Data => {
            let message = err.inner().to_string();
            let base = err.path().to_string();
            let base = if base == "." { String::new() } else { base };
            let path = match missing_field_name(&message) {
                Some(field) if base.is_empty() => field.to_owned(),
                Some(field) => format!("{base}.{field}"),
                None if base.is_empty() => "(root)".to_owned(),
                None => base,
            };
            CveProError::ShapeChanged {
                endpoint,
                path,
                detail: message,
            }
        }
    }
}

/// Integer watt-hours from a JSON number that may be fractional.
///
/// Integers are taken exactly. A fractional value arrives as an `f64` from serde_json (without
/// its `arbitrary_precision` feature, which would change number handling for the whole
/// workspace), and is rounded to the nearest Wh. Energies are far below 2⁵³, where `f64`
/// holds every integer exactly, so the only loss is on exact `.5` ties — half a watt-hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnergyWh(pub i64);

impl<'de> Deserialize<'de> for EnergyWh {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EnergyWh;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of watt-hours")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EnergyWh, E> {
                Ok(EnergyWh(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EnergyWh, E> {
                i64::try_from(v)
                    .map(EnergyWh)
                    .map_err(|_| E::custom("energy out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<EnergyWh, E> {
                if v.is_finite() && v.abs() < 9.0e15 {
                    Ok(EnergyWh(v.round() as i64))
                } else {
                    Err(E::custom("energy out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        a: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    struct Inner {
        #[serde(deserialize_with = "nullable")]
        #[allow(dead_code)]
        b: Option<i64>,
        #[allow(dead_code)]
        e: Option<EnergyWh>,
    }
    const KNOWN: KnownKeys = &[("", &["a", "error"]), ("a[]", &["b", "e", "old"])];

    #[test]
    fn unknown_keys_are_reported_with_normalised_paths() {
        let body = br#"{"error":null,"a":[{"b":1,"old":2,"new":3}],"extra":{"x":1}}"#;
        let d: Decoded<Probe> = decode("t", body, KNOWN).expect("decodes");
        assert_eq!(
            d.unknown_fields,
            vec!["a[].new".to_owned(), "extra".to_owned()]
        );
    }

    #[test]
    fn nullable_fields_must_be_present() {
        let err =
            decode::<Probe>("t", br#"{"a":[{"b":null},{"e":1}]}"#, KNOWN).expect_err("missing b");
        match err {
            CveProError::ShapeChanged { path, .. } => assert_eq!(path, "a[1].b"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn energy_rounds_fractional_wh() {
        let d: Decoded<Probe> = decode(
            "t",
            br#"{"a":[{"b":null,"e":5520.6},{"b":1,"e":7}]}"#,
            KNOWN,
        )
        .expect("ok");
        assert_eq!(d.value.a[0].e, Some(EnergyWh(5521)));
        assert_eq!(d.value.a[1].e, Some(EnergyWh(7)));
        assert!(decode::<Probe>("t", br#"{"a":[{"b":1,"e":"7"}]}"#, KNOWN).is_err());
    }

    #[test]
    fn html_and_garbage_are_malformed_not_shape() {
        for body in [
            &b"<html>502</html>"[..],
            b"",
            b"{\"a\":[",
            b"{\"a\":[]} trailing",
        ] {
            let err = decode::<Probe>("t", body, KNOWN).expect_err("malformed");
            assert_eq!(
                err.kind(),
                crate::ErrorKind::MalformedBody,
                "{body:?}: {err}"
            );
        }
        let err = decode::<Probe>("t", b"[1,2]", KNOWN).expect_err("not an object");
        assert_eq!(err.kind(), crate::ErrorKind::ShapeChanged);
    }

    #[test]
    fn vendor_error_is_found_only_when_a_string() {
        assert_eq!(
            vendor_error(br#"{"error":"boom"}"#).as_deref(),
            Some("boom")
        );
        assert_eq!(vendor_error(br#"{"error":null,"list":[]}"#), None);
        assert_eq!(vendor_error(b"<html>"), None);
    }
}
