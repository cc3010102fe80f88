//! The dashboard's files over real HTTP on loopback: served at `/` and `/ui/...` without the token, with their content types, cache validators and the page's security headers; nothing else is served from them; the API still needs the token.

use orch_engine::{EngineConfig, OrchestrationEngine};
use orch_server::{ASSETS, ServerConfig, Token};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server on an ephemeral loopback port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    token: String,
    _home: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start() -> Server {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = EngineConfig {
        store_url: Some("memory://".into()),
        ..EngineConfig::default()
    };
    let engine = OrchestrationEngine::builder()
        .config(cfg)
        .home(home.path())
        .work_dir(home.path())
        .build()
        .expect("engine");
    let token = Token::load_or_create(home.path()).expect("token");
    let value = token.value().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(orch_server::serve(
        engine,
        token,
        ServerConfig::default(),
        listener,
        async {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        token: value,
        _home: home,
        stop: Some(tx),
    }
}

/// An answer: status, headers (lowercase names) and body bytes.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `METHOD PATH` with extra header lines and reads the whole answer
/// (`Connection: close`; bodies are sent whole or chunked).
async fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .expect("an answer within a minute")
        .expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let rest = &buf[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        unchunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..end])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[]).await
}

#[tokio::test]
async fn every_file_is_served_without_the_token_with_its_type_and_validator() {
    let srv = start().await;
    assert!(ASSETS.len() >= 5, "the dashboard has its files");
    for a in ASSETS {
        let r = get(srv.addr, &format!("/ui/{}", a.path)).await;
        assert_eq!(r.status, 200, "{}: {}", a.path, r.text());
        assert_eq!(r.header("content-type"), Some(a.content_type), "{}", a.path);
        assert_eq!(r.body, a.body, "{}: the bytes compiled in", a.path);
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{}", a.path);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let etag = r.header("etag").expect("an ETag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    }
    let types: Vec<&str> = ASSETS.iter().map(|a| a.content_type).collect();
    for want in [
        "text/html; charset=utf-8",
        "text/css; charset=utf-8",
        "text/javascript; charset=utf-8",
        "image/svg+xml",
    ] {
        assert!(types.contains(&want), "an asset of type {want}");
    }
}

#[tokio::test]
async fn the_page_is_at_the_root_with_its_security_headers() {
    let srv = start().await;
    let r = get(srv.addr, "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(page.contains("<title>orch</title>"), "{page}");
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    // No CDN: every script, style sheet and icon the page names is served here.
    let mut named = 0;
    for attr in ["src=\"", "href=\""] {
        for part in page.split(attr).skip(1) {
            let url = part.split('"').next().expect("a closing quote");
            if url.starts_with('#') {
                continue;
            }
            assert!(
                url.starts_with("/ui/"),
                "the page names {url}, not one of its files"
            );
            let f = get(srv.addr, url).await;
            assert_eq!(f.status, 200, "{url}");
            named += 1;
        }
    }
    assert!(
        named >= 3,
        "the page names its script, style sheet and icon"
    );
    // HEAD answers the same head without the body.
    let h = request(srv.addr, "HEAD", "/", &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(h.body.is_empty());
}

#[tokio::test]
async fn a_matching_validator_gets_304_and_another_gets_the_file() {
    let srv = start().await;
    let first = get(srv.addr, "/ui/js/app.js").await;
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = request(
        srv.addr,
        "GET",
        "/ui/js/app.js",
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = request(
        srv.addr,
        "GET",
        "/ui/js/app.js",
        &[("If-None-Match", "\"0000000000000000\"")],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, first.body);
    // Files differ, and so do their validators.
    let css = get(srv.addr, "/ui/style.css").await;
    assert_ne!(css.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn nothing_but_the_compiled_files_is_served() {
    let srv = start().await;
    // 404 for a name that is not one of the files; 400 for a path the API
    // would refuse too (dot segments, encoded slashes or dots).
    for (path, status) in [
        ("/ui/nope.js", 404),
        ("/ui/src/ui.rs", 404),
        ("/ui/assets/index.html", 404),
        ("/ui/js/../index.html", 400),
        ("/ui/../Cargo.toml", 400),
        ("/ui/%2e%2e/Cargo.toml", 400),
        ("/ui/js%2Fapp.js", 400),
    ] {
        let r = get(srv.addr, path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("an ErrorResponse");
        assert_eq!(v["success"], serde_json::json!(false), "{path}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // The pages take GET (and HEAD) only.
    let post = request(srv.addr, "POST", "/", &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405, "{}", post.text());
}

#[tokio::test]
async fn the_api_still_needs_the_token() {
    let srv = start().await;
    for path in ["/runs", "/status", "/openapi.json", "/workflows", "/ui"] {
        let r = get(srv.addr, path).await;
        assert_eq!(r.status, 401, "{path} without the token: {}", r.text());
    }
    let auth = format!("Bearer {}", srv.token);
    let r = request(srv.addr, "GET", "/runs", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The health light of the page needs no token, as before.
    assert_eq!(get(srv.addr, "/health").await.status, 200);
    // The dashboard is not part of the API's document.
    let doc = request(
        srv.addr,
        "GET",
        "/openapi.json",
        &[("Authorization", &auth)],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&doc.body).expect("JSON");
    let paths = v["paths"].as_object().expect("paths");
    assert!(paths.keys().all(|p| p != "/" && !p.starts_with("/ui")));
}
