//! Errors as people and programs receive them.
//!
//! The JSON API answers `{"error": {"code", "message", "field"?}}`: `code` is a stable English
//! identifier for programs, `message` is pt-BR for the person in front of the screen, and
//! `field` names the input at fault on 4xx for bad input (RELIABILITY.md R7). Pages get the
//! same information as a small HTML page ([`PageError`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "não encontrado")
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "é preciso entrar (sessão ausente, expirada ou encerrada)",
        )
    }

    /// A store failure: logged in full, answered without internals.
    pub fn internal(e: &dyn std::error::Error) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "erro interno; tente novamente em instantes",
        )
    }

    pub fn bad_request(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message).field(field)
    }
}

impl From<vetric_store::StoreError> for ApiError {
    fn from(e: vetric_store::StoreError) -> Self {
        Self::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.field {
            body["field"] = json!(f);
        }
        let mut res = (self.status, axum::Json(json!({ "error": body }))).into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

/// An error answered as an HTML page (pt-BR).
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: "Página não encontrada.".into(),
        }
    }

    pub fn internal(e: &dyn std::error::Error) -> Self {
        tracing::error!(error = %e, "page failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "Erro interno. Tente novamente em instantes.".into(),
        }
    }
}

impl From<vetric_store::StoreError> for PageError {
    fn from(e: vetric_store::StoreError) -> Self {
        Self::internal(&e)
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        Self::internal(&e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        crate::pages::error_page(self.status, &self.message)
    }
}
