//! Multipart uploads of the import and library pages: reading the form under the route's
//! body limit, the file name as shown (never used as a path), and the confirm step's file.

use crate::AppState;
use crate::error::PageError;
use crate::residents_import::sha256_hex;
use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::HashMap;

/// A multipart form's fields, read under the route's body limit.
pub(crate) struct Upload {
    pub fields: HashMap<String, Bytes>,
    /// The file's name as shown ([`shown_name`]).
    pub file_name: String,
    /// The file's name exactly as the browser sent it (checked, never used as a path).
    pub raw_file_name: String,
}

/// The file name as shown on a page: its last path segment, printable characters only, at
/// most 80. It is never used to open, write or name anything.
pub(crate) fn shown_name(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or("");
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    last.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// Reads a multipart form; `too_large` is the page for a body over the route's limit.
pub(crate) async fn read_upload(
    req: Request,
    state: &AppState,
    too_large: fn() -> PageError,
) -> Result<Upload, PageError> {
    let unreadable = || PageError {
        status: StatusCode::BAD_REQUEST,
        message: "Formulário ilegível: envie o arquivo pelo formulário.".into(),
    };
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|_: MultipartRejection| unreadable())?;
    let mut out = Upload {
        fields: HashMap::new(),
        file_name: String::new(),
        raw_file_name: String::new(),
    };
    loop {
        let field: Option<Field<'_>> = match multipart.next_field().await {
            Ok(f) => f,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(_) => return Err(unreadable()),
        };
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            out.file_name = shown_name(field.file_name());
            out.raw_file_name = field.file_name().unwrap_or("").to_owned();
        }
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(_) => return Err(unreadable()),
        };
        out.fields.entry(name).or_insert(bytes);
    }
    Ok(out)
}

pub(crate) fn field_text(u: &Upload, name: &str) -> String {
    u.fields
        .get(name)
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .unwrap_or_default()
}

/// The file a confirm step carries back (base64 `payload`, checked against the preview's
/// `sha256`): its bytes, or a 400 saying nothing was imported. The preview re-validates the
/// bytes afterwards, so a tampered payload can neither skip a check nor import a different
/// file than the one previewed.
pub(crate) fn confirmed_file(upload: &Upload) -> Result<Vec<u8>, PageError> {
    let refused = |m: &str| PageError {
        status: StatusCode::BAD_REQUEST,
        message: format!("{m} Nada foi importado: envie o arquivo de novo."),
    };
    let payload: String = field_text(upload, "payload")
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = BASE64
        .decode(payload.as_bytes())
        .map_err(|_| refused("O conteúdo da confirmação está corrompido."))?;
    if !sha256_hex(&bytes).eq_ignore_ascii_case(&field_text(upload, "sha256")) {
        return Err(refused(
            "O conteúdo da confirmação não confere com o arquivo da prévia (SHA-256 diferente).",
        ));
    }
    Ok(bytes)
}
