//! `POST /api/v1/login` (contract A2.1): `Api-Key` header plus `{email, password}`.

use super::KnownKeys;
use serde::{Deserialize, Serialize};

pub const ENDPOINT: &str = "login";
pub const PATH: &str = "api/v1/login";

/// The request body: exactly `email` and `password`. Never logged, never in an error.
#[derive(Serialize)]
pub struct LoginRequest<'a> {
    pub email: &'a str,
    pub password: &'a str,
}

/// `{"error": null, "token": "…", "user": {…}}` on success,
/// `{"error": "E000 - …", "user": null, "token": null}` on failure.
///
/// Not `Debug`: it holds the token.
#[derive(Deserialize)]
pub struct LoginResponse {
    #[serde(default)]
    pub error: Option<String>,
    /// Opaque, of any length (160 hex on this path, 442 base64url on others). Null on failure.
    #[serde(default)]
    pub token: Option<String>,
    /// Modelled by an independent client, never recorded: optional, epoch seconds or ms.
    #[serde(default, rename = "expiresAt")]
    pub expires_at: Option<i64>,
}

pub const KNOWN: KnownKeys = &[("", &["error", "token", "user", "expiresAt"])];
