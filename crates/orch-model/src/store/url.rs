//! A store URL as it may be shown: in messages, logs, `orch serve`'s
//! status, without the secret it may hold.

/// `scheme://user:secret@host...` as `scheme://user:***@host...`, and a
/// `password=` option as `password=***`; anything else as it is.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                out = format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let end = out[i..].find('&').map_or(out.len(), |e| i + e);
        out.replace_range(i + "password=".len()..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn secrets_are_starred_and_the_rest_kept() {
        assert_eq!(
            redact_url("postgres://orch:s3cret@db:5432/orch?schema=a"),
            "postgres://orch:***@db:5432/orch?schema=a"
        );
        assert_eq!(
            redact_url("postgres://db/orch?user=u&password=pw&sslmode=require"),
            "postgres://db/orch?user=u&password=***&sslmode=require"
        );
        // No secret: unchanged (a user alone, a file path with `@`).
        for url in [
            "postgres://orch@db/orch",
            "sqlite:///home/me/a@b/orch.db",
            "memory://",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
