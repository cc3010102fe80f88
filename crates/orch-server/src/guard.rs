//! What every request passes before a handler: the path check (no `..`, no encoded slashes), CORS (only when asked for), and the bearer token.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths that need no token.
const OPEN_PATHS: &[&str] = &["/health"];

/// Refuses, with 400, a path with a `.` or `..` segment, an encoded slash,
/// backslash or dot (`%2F`, `%5C`, `%2E`), or an encoded NUL: the router
/// never sees a path that could mean another one.
/// The path check alone (the dashboard's files, which need no token).
pub(crate) async fn check_path(req: Request, next: Next) -> Response {
    if let Some(refused) = path_refusal(&req) {
        return refused;
    }
    next.run(req).await
}

pub(crate) fn path_problem(path: &str) -> Result<(), &'static str> {
    for seg in path.split('/') {
        if seg == ".." || seg == "." {
            return Err("it has a `.` or `..` segment");
        }
    }
    // Compared without a lowercased copy of the path (every request
    // passes here).
    let has = |enc: &str| {
        path.as_bytes()
            .windows(enc.len())
            .any(|w| w.eq_ignore_ascii_case(enc.as_bytes()))
    };
    for (enc, why) in [
        ("%2f", "it has an encoded slash (%2F)"),
        ("%5c", "it has an encoded backslash (%5C)"),
        ("%2e", "it has an encoded dot (%2E)"),
        ("%00", "it has an encoded NUL (%00)"),
    ] {
        if path.contains('%') && has(enc) {
            return Err(why);
        }
    }
    if path.contains('\\') {
        return Err("it has a backslash");
    }
    Ok(())
}

/// Lets a request through only with `Authorization: Bearer TOKEN` (except
/// [`OPEN_PATHS`]). The token is compared in constant time.
/// Everything an API request passes before its handler, in one layer (one
/// boxed future and one service clone a request, where three layers took
/// three): the path check, CORS (a preflight is answered here; the allowed
/// origin's answers get its headers, refusals too), then the bearer token.
pub(crate) async fn gate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(refused) = path_refusal(&req) {
        return refused;
    }
    let origin = allowed_origin(&st, &req);
    if let Some(o) = &origin {
        if req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return preflight(o.clone());
        }
    }
    let mut r = match token_refusal(&st, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    };
    if let Some(o) = origin {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

/// The 400 for a path with `..`, `.` or an encoded separator.
fn path_refusal(req: &Request) -> Option<Response> {
    path_problem(req.uri().path()).err().map(|why| {
        ApiError::bad_request(format!(
            "the path {:?} is refused: {why}; name runs, workflows and projects as they are \
             listed",
            req.uri().path()
        ))
        .into_response()
    })
}

/// The 401 for a request without this server's token (none for the open
/// paths).
fn token_refusal(st: &AppState, req: &Request) -> Option<Response> {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return None;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        None => Some(
            ApiError::unauthorized(
                "this request needs `Authorization: Bearer TOKEN`; the token is in \
                 $ORCH_HOME/server-token (printed when the server first started)"
                    .into(),
                "Bearer",
            )
            .into_response(),
        ),
        Some(t) if st.token().matches(t) => None,
        Some(_) => Some(
            ApiError::unauthorized(
                "the bearer token is not this server's; use the one in $ORCH_HOME/server-token"
                    .into(),
                "Bearer error=\"invalid_token\"",
            )
            .into_response(),
        ),
    }
}

/// The configured CORS origin, when the request comes from it.
fn allowed_origin(st: &AppState, req: &Request) -> Option<HeaderValue> {
    let allowed = st.cors()?;
    let from_allowed = req
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == allowed.as_bytes());
    if from_allowed {
        HeaderValue::from_str(allowed).ok()
    } else {
        None
    }
}

/// The answer to a CORS preflight from the allowed origin.
fn preflight(origin: HeaderValue) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, last-event-id"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    r
}

#[cfg(test)]
mod tests {
    use super::path_problem;

    #[test]
    fn dot_segments_and_encoded_separators_are_refused() {
        for bad in [
            "/workflows/..",
            "/workflows/../runs",
            "/./runs",
            "/workflows/a%2Fb",
            "/workflows/a%2fb",
            "/workflows/%2e%2e",
            "/workflows/a%5Cb",
            "/workflows/a\\b",
            "/workflows/a%00",
        ] {
            assert!(path_problem(bad).is_err(), "{bad}");
        }
        for good in [
            "/runs",
            "/workflows/a.b",
            "/workflows/a..b",
            "/runs/0195-ab",
        ] {
            assert!(path_problem(good).is_ok(), "{good}");
        }
    }
}
