//! `http.request`: one HTTP/1.1 request (to notify a webhook, say), on
//! hyper's client connection over a TCP stream, or over TLS for `https://`
//! (the `tls` module: rustls, the certificate and its host name always
//! verified against the roots this machine trusts). No pool: one connection
//! a request. Redirects are not followed: a 3xx is the answer, so an
//! https:// request never goes on over http://.
//!
//! The URL comes from the definition (or a `${...}` reference in it): orch
//! does not judge where it points (no SSRF protection beyond refusing other
//! schemes and credentials in the URL; docs/actions.md). `http://` and
//! `https://` are served; every other scheme is refused. The response's
//! status, headers and body are the step's result; a status outside 200-299
//! fails the step (`HttpStatus`; retryable for 429 and 5xx) unless
//! `fail_on_status: false`.

mod tls;

use crate::action::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use orch_model::{ActionSpec, ParamSpec, ParamType as T};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tls::Tls;

/// The time a request may take when the step says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `http.request`'s parameters.
pub static SPEC: ActionSpec = ActionSpec {
    description: "Sends one HTTP request (http:// or https://) and returns the response's status, headers and body; a status outside 200-299 fails the step unless fail_on_status is false.",
    params: &[
        ParamSpec::required(
            "url",
            T::STRING,
            "the URL, http[s]://HOST[:PORT]/PATH[?QUERY]",
        ),
        ParamSpec::optional(
            "method",
            T::STRING,
            "GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS (default POST with a body, else GET)",
        ),
        ParamSpec::optional("headers", T::OBJECT, "request headers, NAME: text"),
        ParamSpec::optional(
            "json",
            T::ANY,
            "a JSON body (sent with content-type application/json)",
        ),
        ParamSpec::optional("body", T::STRING, "a text body (instead of json)"),
        ParamSpec::optional(
            "timeout",
            T::STRING.or(T::NUMBER),
            "the longest the request may take: seconds or text like \"10s\" (default 30s)",
        ),
        ParamSpec::optional(
            "fail_on_status",
            T::BOOLEAN,
            "whether a status outside 200-299 fails the step (default true)",
        ),
    ],
    open: false,
};

/// `http.request`.
#[derive(Debug)]
pub struct Request;

#[async_trait]
impl Action for Request {
    fn spec(&self) -> Option<&'static ActionSpec> {
        Some(&SPEC)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let req = Planned::of(&params)?;
        tokio::select! {
            r = req.exchange(ctx.output_limit, None) => r,
            () = ctx.cancel.cancelled() => Err(ActionError::permanent(
                "Cancelled",
                format!("{} {} was cancelled", req.method, req.shown),
            )),
        }
    }
}

/// Where a request is, for the message of a timeout.
const CONNECTING: u8 = 0;
const HANDSHAKE: u8 = 1;
const WAITING: u8 = 2;
const READING: u8 = 3;

fn phase_name(phase: u8) -> &'static str {
    match phase {
        CONNECTING => "while connecting",
        HANDSHAKE => "in the TLS handshake",
        WAITING => "waiting for the answer",
        _ => "reading the answer",
    }
}

/// A request checked and ready to send.
#[derive(Debug)]
struct Planned {
    method: hyper::Method,
    /// `https://`: over TLS.
    https: bool,
    host: String,
    port: u16,
    /// The URL without its query, for messages.
    shown: String,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<(Bytes, &'static str)>,
    timeout: Duration,
    fail_on_status: bool,
}

fn bad(message: String) -> ActionError {
    ActionError::invalid_parameters(message)
}

impl Planned {
    fn of(params: &Value) -> Result<Self, ActionError> {
        let url = params.get("url").and_then(Value::as_str).ok_or_else(|| {
            bad("`url` is required: the http:// or https:// URL to send the request to".into())
        })?;
        // The scheme is read from the text first: a URL of another scheme
        // (`file:///x`, which has no authority) is refused for what it is,
        // not for failing to parse as an HTTP URI.
        let scheme = url.split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        let uri: Option<hyper::Uri> = match scheme {
            None => {
                return Err(bad(format!(
                    "`url` {url:?} has no scheme; write it as https://HOST/PATH or http://HOST/PATH"
                )));
            }
            Some(s) if !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https") => None,
            _ => Some(
                url.parse()
                    .map_err(|e| bad(format!("`url` {url:?} is not a URL: {e}")))?,
            ),
        };
        let scheme = uri.as_ref().and_then(hyper::Uri::scheme_str).or(scheme);
        let https = match scheme {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(bad(format!(
                    "`url` {url:?}: the scheme `{other}` is not allowed; only http:// and https:// URLs are"
                )));
            }
            None => {
                return Err(bad(format!(
                    "`url` {url:?} has no scheme; write it as https://HOST/PATH or http://HOST/PATH"
                )));
            }
        };
        let Some(uri) = uri else {
            return Err(bad(format!(
                "`url` {url:?} is not an http:// or https:// URL"
            )));
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad(format!("`url` {url:?} has no host")))?;
        if authority.as_str().contains('@') {
            return Err(bad(format!(
                "`url` {url:?} holds credentials; give them in `headers` (e.g. authorization) instead, so that they stay out of the URL"
            )));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad(format!("`url` {url:?} has no host")));
        }
        if https {
            tls::server_name(host).map_err(|e| bad(format!("`url` {url:?}: {e}")))?;
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let shown = format!(
            "{}://{}{}",
            if https { "https" } else { "http" },
            authority.as_str(),
            uri.path()
        );
        let json_body = params.get("json").filter(|v| !v.is_null());
        let text_body = params.get("body").filter(|v| !v.is_null());
        let body = match (json_body, text_body) {
            (Some(_), Some(_)) => {
                return Err(bad("give either `json` or `body`, not both".into()));
            }
            (Some(j), None) => Some((Bytes::from(j.to_string()), "application/json")),
            (None, Some(Value::String(s))) => {
                Some((Bytes::from(s.clone()), "text/plain; charset=utf-8"))
            }
            (None, Some(_)) => return Err(bad("`body` must be text".into())),
            (None, None) => None,
        };
        let method = match params.get("method").filter(|v| !v.is_null()) {
            None if body.is_some() => hyper::Method::POST,
            None => hyper::Method::GET,
            Some(Value::String(m)) => method(m)?,
            Some(_) => return Err(bad("`method` must be text, such as \"POST\"".into())),
        };
        let mut headers = Vec::new();
        match params.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (k, v) in h {
                    headers.push(header(k, v)?);
                }
            }
            Some(_) => return Err(bad("`headers` must be a map of NAME: text".into())),
        }
        Ok(Self {
            method,
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(default_port(https)),
            shown,
            path,
            headers,
            body,
            timeout: timeout(params.get("timeout"))?,
            fail_on_status: match params.get("fail_on_status") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad("`fail_on_status` must be true or false".into())),
            },
        })
    }

    /// The `host` header: the port only when it is not the scheme's, an
    /// IPv6 address in brackets.
    fn host_header(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match self.port == default_port(self.https) {
            true => host,
            false => format!("{host}:{}", self.port),
        }
    }

    /// The request within its timeout (which covers connecting, the TLS
    /// handshake and reading the answer), its answer judged. `tls` is the
    /// roots to trust for https, the system's when `None`.
    async fn exchange(&self, limit: usize, tls: Option<Arc<Tls>>) -> Result<Value, ActionError> {
        let what = format!("{} {}", self.method, self.shown);
        let phase = AtomicU8::new(CONNECTING);
        match tokio::time::timeout(self.timeout, self.send(limit, tls, &what, &phase)).await {
            Ok(r) => r.and_then(|resp| judge(resp, &what, self.fail_on_status)),
            Err(_) => Err(ActionError::retryable(
                "TimeoutError",
                format!(
                    "{what} took longer than its timeout of {} ({})",
                    orch_model::duration::format_duration(self.timeout),
                    phase_name(phase.load(Ordering::Relaxed))
                ),
            )),
        }
    }

    /// Connects (and for https makes the TLS handshake), sends, and reads
    /// the response (at most `limit` bytes of body).
    async fn send(
        &self,
        limit: usize,
        tls: Option<Arc<Tls>>,
        what: &str,
        phase: &AtomicU8,
    ) -> Result<Response, ActionError> {
        // The roots first: a machine without any fails before connecting.
        let tls = match (self.https, tls) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(Tls::system().await?),
        };
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                ActionError::retryable("ConnectionError", format!("{what}: cannot connect: {e}"))
            })?;
        match tls {
            None => self.over(stream, limit, what, phase).await,
            Some(tls) => {
                phase.store(HANDSHAKE, Ordering::Relaxed);
                let stream = tls.connect(stream, &self.host, what).await?;
                self.over(stream, limit, what, phase).await
            }
        }
    }

    /// The exchange over a connected stream (TCP, or TLS over TCP).
    async fn over<S>(
        &self,
        stream: S,
        limit: usize,
        what: &str,
        phase: &AtomicU8,
    ) -> Result<Response, ActionError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        phase.store(WAITING, Ordering::Relaxed);
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| ActionError::retryable("ConnectionError", format!("{what}: {e}")))?;
        let driver = tokio::spawn(conn);
        let mut b = hyper::Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str());
        let host = self.host_header();
        let given = |name: &HeaderName| self.headers.iter().any(|(n, _)| n == name);
        if !given(&HOST) {
            b = b.header(HOST, host);
        }
        if let Some((_, ty)) = &self.body {
            if !given(&CONTENT_TYPE) {
                b = b.header(CONTENT_TYPE, *ty);
            }
        }
        for (n, v) in &self.headers {
            b = b.header(n, v);
        }
        let body = self
            .body
            .as_ref()
            .map(|(b, _)| b.clone())
            .unwrap_or_default();
        let request = b
            .body(Full::new(body))
            .map_err(|e| bad(format!("{what}: the request cannot be built: {e}")))?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| ActionError::retryable("ConnectionError", format!("{what}: {e}")))?;
        phase.store(READING, Ordering::Relaxed);
        let (parts, mut incoming) = resp.into_parts();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| {
                ActionError::retryable(
                    "ConnectionError",
                    format!("{what}: reading the response: {e}"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                let room = limit.saturating_sub(body.len());
                if data.len() > room {
                    body.extend_from_slice(&data[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&data);
            }
        }
        driver.abort();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            truncated,
        })
    }
}

/// 443 for https, 80 for http.
fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

fn method(m: &str) -> Result<hyper::Method, ActionError> {
    const ALLOWED: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let upper = m.trim().to_ascii_uppercase();
    if !ALLOWED.contains(&upper.as_str()) {
        return Err(bad(format!(
            "`method` {m:?} is not one of {}",
            ALLOWED.join(", ")
        )));
    }
    hyper::Method::from_bytes(upper.as_bytes()).map_err(|e| bad(format!("`method` {m:?}: {e}")))
}

fn header(name: &str, value: &Value) -> Result<(HeaderName, HeaderValue), ActionError> {
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        bad(format!(
            "header name {name:?} is not a valid HTTP header name"
        ))
    })?;
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(bad(format!("header `{name}` must be text"))),
    };
    let v = HeaderValue::from_str(&text).map_err(|_| {
        bad(format!(
            "header `{name}` holds characters a header cannot (a line break or a control character)"
        ))
    })?;
    Ok((n, v))
}

fn timeout(v: Option<&Value>) -> Result<Duration, ActionError> {
    let d = match v {
        None | Some(Value::Null) => return Ok(DEFAULT_TIMEOUT),
        Some(Value::String(s)) => orch_model::duration::parse_timeout(s),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| "not a number".to_owned())
            .and_then(orch_model::duration::seconds),
        Some(_) => Err("a number of seconds or text like \"10s\"".to_owned()),
    };
    match d {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(bad("`timeout` must be more than 0".into())),
        Err(e) => Err(bad(format!("`timeout`: {e}"))),
    }
}

/// What came back.
#[derive(Debug)]
struct Response {
    status: hyper::StatusCode,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
    truncated: bool,
}

/// The result (`{status, headers, body, truncated?}`), or a failure for a
/// status outside 200-299 (carrying the same data) when it counts as one.
fn judge(r: Response, what: &str, fail_on_status: bool) -> Result<Value, ActionError> {
    let mut headers = Map::new();
    for (name, value) in &r.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            // A repeated header: its values joined, as HTTP allows.
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(v));
            }
        }
    }
    let is_json = r
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().ends_with("json"))
        });
    let body = match is_json && !r.truncated {
        true => serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned())),
        false => Value::String(String::from_utf8_lossy(&r.body).into_owned()),
    };
    let mut out = json!({
        "status": r.status.as_u16(),
        "headers": headers,
        "body": body,
    });
    if r.truncated {
        out["truncated"] = Value::Bool(true);
    }
    if fail_on_status && !r.status.is_success() {
        let code = r.status.as_u16();
        let message = format!("{what} answered {}", r.status);
        let e = if code == 429 || r.status.is_server_error() {
            ActionError::retryable("HttpStatus", message)
        } else {
            ActionError::permanent("HttpStatus", message)
        };
        return Err(e.with_data(out));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(v: Value) -> Result<Planned, String> {
        Planned::of(&v).map_err(|e| e.message)
    }

    #[test]
    fn requests_are_checked_before_anything_is_sent() {
        let p = plan(json!({"url": "http://127.0.0.1:8080/hook?x=1", "json": {"a": 1}}))
            .expect("valid");
        assert_eq!(p.method, hyper::Method::POST);
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 8080));
        assert_eq!(p.path, "/hook?x=1");
        assert_eq!(p.shown, "http://127.0.0.1:8080/hook");
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        let p = plan(json!({"url": "http://example.invalid", "timeout": "2s"})).expect("get");
        assert_eq!(
            (p.method, p.port, p.path.as_str()),
            (hyper::Method::GET, 80, "/")
        );
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert!(!p.https);
        // https: port 443 unless given, the scheme kept in messages.
        let p =
            plan(json!({"url": "https://hooks.example.invalid/services/T1?x=1"})).expect("https");
        assert!(p.https);
        assert_eq!((p.host.as_str(), p.port), ("hooks.example.invalid", 443));
        assert_eq!(p.shown, "https://hooks.example.invalid/services/T1");
        assert_eq!(p.path, "/services/T1?x=1");
        let p = plan(json!({"url": "HTTPS://127.0.0.1:8443/"})).expect("any case");
        assert!(p.https);
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 8443));
        // The host header: no default port, IPv6 in brackets.
        for (url, header) in [
            ("https://h.example/", "h.example"),
            ("https://h.example:443/", "h.example"),
            ("http://h.example:443/", "h.example:443"),
            ("http://h.example:80/", "h.example"),
            ("https://[::1]:8443/", "[::1]:8443"),
            ("http://[::1]/", "[::1]"),
        ] {
            let p = plan(json!({ "url": url })).expect("valid");
            assert_eq!(p.host_header(), header, "{url}");
        }
        for (params, says) in [
            (
                json!({"url": "ftp://h/x"}),
                "the scheme `ftp` is not allowed",
            ),
            (
                json!({"url": "file:///etc/passwd"}),
                "the scheme `file` is not allowed",
            ),
            (
                json!({"url": "wss://h/x"}),
                "only http:// and https:// URLs are",
            ),
            (json!({"url": "https://u:p@h/x"}), "holds credentials"),
            (json!({"url": "h/x"}), "has no scheme"),
            (json!({"url": "http://u:p@h/x"}), "holds credentials"),
            (json!({}), "`url` is required"),
            (
                json!({"url": "http://h", "json": 1, "body": "x"}),
                "not both",
            ),
            (
                json!({"url": "http://h", "method": "BREW"}),
                "is not one of",
            ),
            (
                json!({"url": "http://h", "headers": {"x": "a\nb"}}),
                "line break",
            ),
            (
                json!({"url": "http://h", "headers": {"bad name": "a"}}),
                "not a valid HTTP header name",
            ),
            (json!({"url": "http://h", "timeout": 0}), "more than 0"),
            (
                json!({"url": "http://h", "fail_on_status": "no"}),
                "true or false",
            ),
        ] {
            let e = plan(params.clone()).expect_err("refused");
            assert!(e.contains(says), "{params}: {e}");
        }
    }
}
