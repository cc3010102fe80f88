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
pub(crate) async fn check_path(req: Request, next: Next) -> Response {
    if let Err(why) = path_problem(req.uri().path()) {
        return ApiError::bad_request(format!(
            "the path {:?} is refused: {why}; name runs, workflows and projects as they are \
             listed",
            req.uri().path()
        ))
        .into_response();
    }
    next.run(req).await
}

/// Why a raw request path is refused, if it is.
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
pub(crate) async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
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
        None => ApiError::unauthorized(
            "this request needs `Authorization: Bearer TOKEN`; the token is in \
             $ORCH_HOME/server-token (printed when the server first started)"
                .into(),
            "Bearer",
        )
        .into_response(),
        Some(t) if st.token().matches(t) => next.run(req).await,
        Some(_) => ApiError::unauthorized(
            "the bearer token is not this server's; use the one in $ORCH_HOME/server-token".into(),
            "Bearer error=\"invalid_token\"",
        )
        .into_response(),
    }
}

/// CORS for one origin, when the server was started with `--cors ORIGIN`:
/// preflights from that origin are answered here (before the token check,
/// as browsers send none), and its requests get `Access-Control-Allow-Origin`.
/// Other origins get no CORS header (the browser then refuses the answer).
pub(crate) async fn cors(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(allowed) = st.cors() else {
        return next.run(req).await;
    };
    let from_allowed = req
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == allowed.as_bytes());
    if !from_allowed {
        return next.run(req).await;
    }
    let origin = HeaderValue::from_str(allowed).ok();
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        if let Some(o) = origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
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
        return r;
    }
    let mut r = next.run(req).await;
    if let Some(o) = origin {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
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
