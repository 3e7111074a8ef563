//! Errors: [`Error`] for the library (client, metadata, setup) and [`ApiError`], the OCI
//! Distribution spec's JSON error (`{"errors":[{"code","message","detail"}]}`) with its status.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The spec's error codes (distribution-spec "Error Codes", plus docker's TOOMANYREQUESTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    PaginationNumberInvalid,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
        }
    }
    /// The status the spec pairs with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer of the registry API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    /// Extra headers (WWW-Authenticate, Range, …).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            status: code.status(),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }
    pub fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("registry internal error: {e}");
        ApiError::new(Code::Unsupported, format!("internal error: {e}"))
            .status(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": null }]
        });
        let mut r = (self.status, axum::Json(body)).into_response();
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Content(gabang_content::Error::BlobNotFound(d)) => {
                ApiError::new(Code::BlobUnknown, format!("blob {d} unknown"))
            }
            Error::Content(gabang_content::Error::DigestMismatch {
                expected, actual, ..
            }) => ApiError::new(
                Code::DigestInvalid,
                format!("content digest {actual} does not match {expected}"),
            ),
            Error::Content(gabang_content::Error::SizeMismatch {
                expected, actual, ..
            }) => ApiError::new(
                Code::SizeInvalid,
                format!("content is {actual} bytes, expected {expected}"),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<gabang_content::Error> for ApiError {
    fn from(e: gabang_content::Error) -> Self {
        Error::Content(e).into()
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e)
    }
}

/// Library errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Content(#[from] gabang_content::Error),
    #[error("registry metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// The registry could not be reached.
    #[error("cannot reach registry {registry}: {reason}")]
    Network { registry: String, reason: String },
    /// 401/403 after trying the credentials we have.
    #[error("authentication to {registry} failed: {reason} (try `gabang login {registry}`)")]
    Auth { registry: String, reason: String },
    #[error("{what} not found on {registry}")]
    NotFound { registry: String, what: String },
    /// Any other error answer of a registry.
    #[error("registry {registry} answered {status} to {what}: {message}")]
    Registry {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_ctx<T>(r: std::io::Result<T>, ctx: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|source| Error::Io {
        context: ctx(),
        source,
    })
}

pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}
