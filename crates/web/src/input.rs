//! Reading untrusted input: JSON bodies and query strings, with 4xx errors that name the
//! field at fault (RELIABILITY.md R7).
//!
//! Bodies are read through axum's `Bytes` extractor, so the router's body limit applies
//! (413). The JSON is then parsed into a generic object and fields are taken one by one: a
//! missing field or a wrong type is a 422 naming it; invalid JSON is a 400; invalid UTF-8 is a
//! 400 naming the field that contains it when that can be told.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

/// The JSON body limit (also the limit of HTML form posts).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON object body.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "envie o corpo como JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_rejection(r.status()))?;
        parse_object(&bytes).map(JsonObject)
    }
}

/// The answer to a body that could not be read: 413 when it is too large.
pub fn body_rejection(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "corpo da requisição grande demais (máximo {} KiB)",
                BODY_LIMIT / 1024
            ),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "não foi possível ler o corpo da requisição",
        )
    }
}

/// Parses a JSON object, naming what is wrong.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        let field = field_with_invalid_utf8(bytes, e.valid_up_to());
        let mut err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            "o corpo contém bytes que não são UTF-8 válido",
        );
        err.field = field;
        return Err(err);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "o corpo deve ser um objeto JSON",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("JSON inválido (linha {}, coluna {})", e.line(), e.column()),
        )),
    }
}

/// The top-level key whose string value holds the first invalid byte, when the rest parses.
fn field_with_invalid_utf8(bytes: &[u8], at: usize) -> Option<String> {
    // Replace the bad bytes by a marker that cannot appear in valid input, then look for it.
    const MARK: char = '\u{FFFF}';
    let mut text = String::from_utf8_lossy(&bytes[..at]).into_owned();
    text.push(MARK);
    let rest = String::from_utf8_lossy(&bytes[at..]).into_owned();
    let rest = rest.trim_start_matches('\u{FFFD}');
    text.push_str(rest);
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) else {
        return None;
    };
    map.into_iter()
        .find(|(k, v)| k.contains(MARK) || v.as_str().is_some_and(|s| s.contains(MARK)))
        .map(|(k, _)| k.replace(MARK, "?"))
}

/// Field accessors with errors that name the field.
pub trait Fields {
    /// A required string of at most `max_chars` characters.
    fn required_str(&self, name: &str, max_chars: usize) -> Result<String, ApiError>;
}

impl Fields for Map<String, Value> {
    fn required_str(&self, name: &str, max_chars: usize) -> Result<String, ApiError> {
        match self.get(name) {
            None | Some(Value::Null) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_field",
                format!("o campo {name} é obrigatório"),
            )
            .field(name)),
            Some(Value::String(s)) if s.chars().count() > max_chars => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_long",
                format!("o campo {name} aceita no máximo {max_chars} caracteres"),
            )
            .field(name)),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_type",
                format!("o campo {name} deve ser um texto"),
            )
            .field(name)),
        }
    }
}

/// The `?commit=true|false` of the import API routes (a dry run unless it is true); any other
/// parameter or value is a 400 naming it.
pub fn commit_flag(raw: Option<&str>) -> Result<bool, ApiError> {
    let mut commit = false;
    for (_, v) in query_pairs(raw, &["commit"])? {
        commit = match v.as_str() {
            "true" | "1" => true,
            "false" | "0" | "" => false,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "commit",
                    "commit aceita true ou false",
                ));
            }
        };
    }
    Ok(commit)
}

/// A query string as ordered pairs, refusing parameters not in `allowed` and repeated ones.
pub fn query_pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                &k,
                format!(
                    "parâmetro desconhecido {k}; aceitos: {}",
                    allowed.join(", ")
                ),
            ));
        }
        if out.iter().any(|(seen, _)| seen == &k) {
            return Err(ApiError::bad_request(
                "repeated_parameter",
                &k,
                format!("o parâmetro {k} aparece mais de uma vez"),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_its_field() {
        let mut body = br#"{"email":"a@b.c","password":"x"#.to_vec();
        body.push(0xff);
        body.extend_from_slice(br#"y"}"#);
        let err = parse_object(&body).unwrap_err();
        assert_eq!(err.code, "invalid_utf8");
        assert_eq!(err.field.as_deref(), Some("password"));
    }

    #[test]
    fn missing_and_wrong_type_name_the_field() {
        let map = parse_object(br#"{"email": 5}"#).unwrap();
        let err = map.required_str("email", 10).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (422, "invalid_type"));
        let err = map.required_str("password", 10).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("password"));
        assert_eq!(parse_object(b"[1]").unwrap_err().code, "invalid_json");
        assert_eq!(parse_object(b"{").unwrap_err().code, "invalid_json");
    }

    #[test]
    fn unknown_query_parameters_are_refused_by_name() {
        let err = query_pairs(Some("from=1&lmit=2"), &["from", "limit"]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("lmit"));
        let ok = query_pairs(Some("from=a%20b"), &["from"]).unwrap();
        assert_eq!(ok, vec![("from".to_owned(), "a b".to_owned())]);
    }
}
