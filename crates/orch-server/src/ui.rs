//! The dashboard: its files (HTML, CSS, JavaScript modules, an icon), compiled into the binary and served at `/` and `/ui/...` without the token.
//!
//! The files are static and hold no data: every figure the pages show comes
//! from the API, which the page calls with the bearer token (asked for once,
//! or taken from the `#token=` fragment of the link `orch serve` prints,
//! which the browser never sends to the server). So the pages load without
//! the token while the API still needs it. There is no build step: the
//! files under `assets/` are what the browser runs, so no internet, CDN or
//! toolchain is needed to build or use them.
//!
//! Each answer has its content type, `X-Content-Type-Options: nosniff`, and
//! `Cache-Control: no-cache` with a strong `ETag` made from the file's bytes:
//! a browser asks again each time and gets `304 Not Modified` until a new
//! binary serves other bytes (module files are imported by fixed names, so
//! a long-lived cache could mix versions). The page itself also gets a
//! Content Security Policy that allows only this origin's scripts, styles
//! and connections, and cannot be framed.

use crate::error::ApiError;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;

/// One file of the dashboard.
#[derive(Debug)]
pub struct Asset {
    /// Its path under `/ui/` (`index.html` is also served at `/`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the dashboard.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/api.js", JS),
    asset!("js/app.js", JS),
    asset!("js/dag.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/gantt.js", JS),
    asset!("js/model.js", JS),
    asset!("js/projects.js", JS),
    asset!("js/run.js", JS),
    asset!("js/runs.js", JS),
    asset!("js/step.js", JS),
    asset!("js/system.js", JS),
    asset!("js/vlist.js", JS),
    asset!("js/workflows.js", JS),
    asset!("js/yaml.js", JS),
];

/// The policy of the page: this origin's scripts, styles, images and API
/// only; no plugins, no `<base>`, no framing, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// The dashboard's routes: `GET /` (the page) and `GET /ui/{*path}` (its
/// files). They need no token and are outside the API's route table; their
/// paths pass the API's path check (no `..`, no encoded slash).
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(file))
        .layer(axum::middleware::from_fn(crate::guard::check_path))
}

/// The strong validator of each asset, in the order of [`ASSETS`]: a hash
/// of its bytes and the crate's version.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let mut h = Fnv::default();
            h.write(env!("CARGO_PKG_VERSION").as_bytes());
            h.write(a.path.as_bytes());
            h.write(a.body);
            format!("\"{:016x}\"", h.0)
        })
        .collect()
});

/// FNV-1a (64 bits): a cache validator needs no cryptographic hash, and
/// this one needs no dependency.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// The asset at `path` (a name of [`ASSETS`], nothing read from disk), or 404.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return ApiError::not_found(format!(
            "the dashboard has no file {path:?}; open / for the dashboard"
        ))
        .into_response();
    };
    let asset = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_under_assets_is_served_and_every_served_file_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).expect("read assets") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    let rel = p.strip_prefix(&root).expect("under assets");
                    on_disk.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served, "assets/ and ASSETS differ");
    }

    #[test]
    fn module_imports_name_files_that_are_served() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("utf-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line
                    .rsplit_once("from \"./")
                    .map(|(_, s)| s.trim_end_matches("\";"))
                    .unwrap_or_else(|| panic!("{}: an import not from ./: {line}", a.path));
                let target = format!("js/{spec}");
                assert!(
                    ASSETS.iter().any(|b| b.path == target),
                    "{} imports {target}, which is not served",
                    a.path
                );
            }
        }
    }

    #[test]
    fn validators_differ_by_content() {
        let tags: std::collections::BTreeSet<&String> = ETAGS.iter().collect();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
