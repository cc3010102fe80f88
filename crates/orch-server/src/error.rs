//! Errors as HTTP answers: the seed's `ErrorResponse` body with a status code that fits, and the JSON body extractor whose refusals have the same shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orch_model::{ErrorCode, ErrorResponse, OrchestrationError};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// An error answer: a status code and the seed's error body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, `{success: false, error, error_type, error_code, details, suggestions}`.
    pub body: Box<ErrorResponse>,
    /// Sent as `WWW-Authenticate` (answers 401).
    challenge: Option<&'static str>,
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error of the server's own (not the engine's): `status`, a code, a
    /// category and a message saying what is wrong and how to fix it.
    pub fn new(status: StatusCode, code: ErrorCode, error_type: &str, message: String) -> Self {
        Self {
            status,
            body: Box::new(ErrorResponse {
                success: false,
                error: message,
                error_type: error_type.to_owned(),
                error_code: code,
                details: json!({}),
                suggestions: Vec::new(),
            }),
            challenge: None,
        }
    }

    /// 400: the request is malformed (a path parameter, a query, a body field).
    pub fn bad_request(message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidParameters,
            "ValidationError",
            message,
        )
    }

    /// 404: nothing of that kind has that name or id.
    pub fn not_found(message: String) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "NotFoundError",
            message,
        )
    }

    /// 401: no token, or not the server's token.
    pub fn unauthorized(message: String, challenge: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied,
            "AuthenticationError",
            message,
        );
        e.challenge = Some(challenge);
        e
    }

    /// 500: the server failed; the message says what.
    pub fn internal(message: String) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::IoError,
            "InternalError",
            message,
        )
    }

    /// With `details` in the body.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.body.details = details;
        self
    }

    /// With a suggestion in the body.
    #[must_use]
    pub fn suggest(mut self, suggestion: &str) -> Self {
        self.body.suggestions.push(suggestion.to_owned());
        self
    }
}

/// The HTTP status of an engine error, by its stable code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::WorkflowNotFound | ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::InvalidParameters => StatusCode::BAD_REQUEST,
        ErrorCode::ModuleNotFound | ErrorCode::ValidationFailed | ErrorCode::CycleDetected => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ProjectExists
        | ErrorCode::AlreadyExists
        | ErrorCode::InvalidState
        | ErrorCode::Cancelled => StatusCode::CONFLICT,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::ResourceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TimeoutExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::NotSupported => StatusCode::NOT_IMPLEMENTED,
        // The engine's own failures (store, I/O, a project operation, a
        // dependency) are the server's, not the request's.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<OrchestrationError> for ApiError {
    fn from(e: OrchestrationError) -> Self {
        let body = Box::new(e.to_response());
        Self {
            status: status_of(body.error_code),
            body,
            challenge: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(*self.body)).into_response();
        if let Some(c) = self.challenge {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }
}

/// A JSON request body, read within the server's body limit and decoded;
/// its refusals are [`ApiError`]s: 413 over the limit, 400 for text that is
/// not JSON (with line and column), 422 for JSON of the wrong shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::LimitExceeded,
                    "LimitError",
                    format!(
                        "the request body is larger than the server's limit ({e}); send less, or \
                         start the server with a larger --body-limit"
                    ),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        decode(&bytes).map(JsonBody)
    }
}

/// Decodes a JSON body: 400 for a syntax error, 422 for the wrong shape.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let at = format!("line {}, column {}", e.line(), e.column());
        match e.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidParameters,
                "ValidationError",
                format!("the request body does not fit: {e}"),
            )
            .with_details(json!({"line": e.line(), "column": e.column()}))
            .suggest("GET /openapi.json describes every request body"),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request(format!("the request body is not valid JSON ({at}): {e}"))
                    .with_details(json!({"line": e.line(), "column": e.column()}))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_get_fitting_statuses() {
        let nf = ApiError::from(OrchestrationError::not_found(
            orch_model::EntityKind::Run,
            "x",
        ));
        assert_eq!(nf.status, StatusCode::NOT_FOUND);
        assert_eq!(nf.body.error_code, ErrorCode::NotFound);
        let st = ApiError::from(OrchestrationError::InvalidState {
            message: "ended".into(),
        });
        assert_eq!(st.status, StatusCode::CONFLICT);
        assert_eq!(
            status_of(ErrorCode::ValidationFailed),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status_of(ErrorCode::StoreError),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn bodies_that_are_not_json_or_do_not_fit_are_told_apart() {
        #[derive(Debug, serde::Deserialize)]
        struct B {
            #[allow(dead_code)]
            a: u32,
        }
        let syntax = decode::<B>(b"{\"a\": ").expect_err("refused");
        assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
        assert!(
            syntax.body.error.contains("line 1"),
            "{}",
            syntax.body.error
        );
        let shape = decode::<B>(b"{\"a\": \"x\"}").expect_err("refused");
        assert_eq!(shape.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
