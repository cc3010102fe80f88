//! How a store is opened: the URL and its options.

use orch_model::store::redact_url as redact;
use orch_model::{OrchestrationError, Result};
use std::time::Duration;

/// How a [`PostgresStore`](crate::PostgresStore) connects.
///
/// Built by [`PostgresOptions::parse_url`] from a URL such as
/// `postgres://USER@HOST:PORT/DATABASE?schema=orch&pool_size=8`. The options
/// this crate reads (and removes before the URL goes to the driver):
///
/// - `schema=NAME`: the schema the tables live in (created when missing;
///   lowercase letters, digits and `_`, at most 63). Without it, the
///   connection's default (`public`, unless the server says otherwise).
///   Several orch installations can share one database, one schema each.
/// - `pool_size=N`: at most N connections (default 8), plus one for
///   [`PostgresStore::wait_for_work`](crate::PostgresStore::wait_for_work).
/// - `connect_attempts=N`: how often opening tries to connect before it
///   gives up (default 5, waiting 200 ms, 400 ms, 800 ms, ... between).
/// - `mode=ro`: read-only: no migration, and the server refuses every write
///   (`default_transaction_read_only`); `mode=rw` is the default.
///
/// Every other option is the driver's (libpq's names: `connect_timeout`,
/// `application_name`, `host`, `port`, `user`, `password`, `dbname`,
/// `options`, ...). `connect_timeout` defaults to 5 seconds and
/// `application_name` to `orch`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The connection URL handed to the driver (without this crate's options).
    pub url: String,
    /// The schema of the tables (`None`: the connection's default).
    pub schema: Option<String>,
    /// The most connections the pool opens.
    pub pool_size: usize,
    /// How often opening tries to connect.
    pub connect_attempts: u32,
    /// The first wait between two attempts (doubling after each).
    pub connect_backoff: Duration,
    /// No migration; the server refuses writes.
    pub read_only: bool,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_attempts", &self.connect_attempts)
            .field("connect_backoff", &self.connect_backoff)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// The default number of pooled connections.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// The default number of attempts to connect at open.
pub const DEFAULT_CONNECT_ATTEMPTS: u32 = 5;

impl PostgresOptions {
    /// The options of a `postgres://` or `postgresql://` URL.
    ///
    /// # Errors
    /// `InvalidParameters` for another scheme, or an option of this crate
    /// that is malformed (the driver checks its own when the store opens).
    pub fn parse_url(url: &str) -> Result<Self> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad_url(url, "is not a URL"));
        };
        if scheme != "postgres" && scheme != "postgresql" {
            return Err(bad_url(url, "is not a postgres:// or postgresql:// URL"));
        }
        let (base, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let mut options = Self {
            url: String::new(),
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            connect_attempts: DEFAULT_CONNECT_ATTEMPTS,
            connect_backoff: Duration::from_millis(200),
            read_only: false,
        };
        let mut passed = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let wrong = |why: &str| bad_url(url, &format!("option `{pair}` {why}"));
            match pair.split_once('=') {
                Some(("schema", name)) => {
                    options.schema = Some(check_schema(name).map_err(|e| wrong(&e))?)
                }
                Some(("pool_size", n)) => {
                    options.pool_size = n
                        .parse()
                        .ok()
                        .filter(|&n: &usize| (1..=1000).contains(&n))
                        .ok_or_else(|| wrong("needs a whole number from 1 to 1000"))?;
                }
                Some(("connect_attempts", n)) => {
                    options.connect_attempts = n
                        .parse()
                        .ok()
                        .filter(|&n: &u32| (1..=100).contains(&n))
                        .ok_or_else(|| wrong("needs a whole number from 1 to 100"))?;
                }
                Some(("mode", "ro")) => options.read_only = true,
                Some(("mode", "rw")) => options.read_only = false,
                Some(("mode", _)) => return Err(wrong("is not ro or rw")),
                _ => passed.push(pair),
            }
        }
        options.url = if passed.is_empty() {
            format!("{scheme}://{base}")
        } else {
            format!("{scheme}://{base}?{}", passed.join("&"))
        };
        Ok(options)
    }

    /// These options with `schema`.
    ///
    /// # Errors
    /// `InvalidParameters` for a name that is not a plain lowercase identifier.
    pub fn with_schema(mut self, schema: &str) -> Result<Self> {
        self.schema = Some(check_schema(schema).map_err(|e| {
            OrchestrationError::invalid_parameters(format!("schema `{schema}` {e}"))
        })?);
        Ok(self)
    }

    /// The URL with its password, if any, replaced by `***` (for messages).
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// The driver's configuration: the URL, with the schema as the
    /// connection's `search_path` and this crate's defaults.
    pub(crate) fn driver_config(&self) -> Result<tokio_postgres::Config> {
        let mut cfg: tokio_postgres::Config = self.url.parse().map_err(|e| {
            OrchestrationError::invalid_parameters(format!(
                "store URL `{}`: {e}{}; write postgres://USER@HOST:PORT/DATABASE[?schema=NAME]",
                self.redacted_url(),
                source_text(&e)
            ))
        })?;
        let mut server_options: Vec<String> =
            cfg.get_options().map(str::to_owned).into_iter().collect();
        if let Some(schema) = &self.schema {
            server_options.push(format!("-c search_path={schema}"));
        }
        if self.read_only {
            server_options.push("-c default_transaction_read_only=on".to_owned());
        }
        if !server_options.is_empty() {
            cfg.options(server_options.join(" "));
        }
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("orch");
        }
        Ok(cfg)
    }
}

/// The text of an error's sources, each after `: `.
pub(crate) fn source_text(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

fn bad_url(url: &str, why: &str) -> OrchestrationError {
    OrchestrationError::invalid_parameters(format!(
        "store URL `{}` {why}; write postgres://USER@HOST:PORT/DATABASE with options after `?`: schema=NAME, pool_size=N, connect_attempts=N, mode=ro (and the driver's, e.g. connect_timeout=SECONDS)",
        redact(url)
    ))
}

fn check_schema(name: &str) -> std::result::Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err("is not a schema name this store accepts: lowercase letters, digits and `_`, starting with a letter or `_`, at most 63".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_options_are_taken_out_and_the_rest_is_the_drivers() {
        let o = PostgresOptions::parse_url(
            "postgresql://u:pw@db:5433/orch?schema=team_a&pool_size=3&connect_timeout=2&mode=ro",
        )
        .expect("parse");
        assert_eq!(o.schema.as_deref(), Some("team_a"));
        assert_eq!((o.pool_size, o.read_only), (3, true));
        assert_eq!(o.url, "postgresql://u:pw@db:5433/orch?connect_timeout=2");
        assert_eq!(
            o.redacted_url(),
            "postgresql://u:***@db:5433/orch?connect_timeout=2"
        );
        assert!(!format!("{o:?}").contains("pw"), "no password in Debug");
        let cfg = o.driver_config().expect("driver config");
        assert_eq!(
            cfg.get_options(),
            Some("-c search_path=team_a -c default_transaction_read_only=on")
        );
        assert_eq!(cfg.get_connect_timeout(), Some(&Duration::from_secs(2)));
    }

    #[test]
    fn bad_urls_and_options_are_refused_with_the_way_to_write_them() {
        for (url, what) in [
            ("mysql://x/y", "not a postgres://"),
            ("postgres://x/y?schema=Bad-Name", "schema name"),
            ("postgres://x/y?pool_size=0", "from 1 to 1000"),
            ("postgres://x/y?mode=rx", "not ro or rw"),
            ("nothing", "is not a URL"),
        ] {
            let e = PostgresOptions::parse_url(url).expect_err(url).to_string();
            assert!(e.contains(what), "{url}: {e}");
            assert!(e.contains("postgres://USER@HOST:PORT/DATABASE"), "{e}");
        }
        let bad = PostgresOptions::parse_url("postgres://x/y?nonsense=1").expect("ours are fine");
        let e = bad
            .driver_config()
            .expect_err("the driver's are checked")
            .to_string();
        assert!(e.contains("nonsense"), "{e}");
    }
}
