//! `code.stats`: files and code, comment and blank lines per language for a directory.
//!
//! Lines are classified by the language's comment syntax, found from the
//! file's extension: a blank line holds only whitespace; a comment line holds
//! only a comment (a line comment, or text inside a block comment); every
//! other line is code. A line with code and a trailing comment counts as code.
//! Files in no known language are not counted (they are listed under
//! `skipped`), nor are files larger than `max_file_size`, files that are not
//! UTF-8 text, hidden files and directories (unless `hidden: true`), and
//! symbolic links (never followed).

use super::fs::{blocking, confine};
use crate::action::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// A language's name, its file extensions and comment syntax.
struct Lang {
    name: &'static str,
    exts: &'static [&'static str],
    line: &'static [&'static str],
    block: Option<(&'static str, &'static str)>,
}

const C_LIKE: Option<(&str, &str)> = Some(("/*", "*/"));

const LANGS: &[Lang] = &[
    Lang {
        name: "Rust",
        exts: &["rs"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "Python",
        exts: &["py", "pyi"],
        line: &["#"],
        block: None,
    },
    Lang {
        name: "JavaScript",
        exts: &["js", "mjs", "cjs", "jsx"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "TypeScript",
        exts: &["ts", "tsx", "mts", "cts"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "C",
        exts: &["c", "h"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "C++",
        exts: &["cc", "cpp", "cxx", "hpp", "hh", "hxx"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "Go",
        exts: &["go"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "Java",
        exts: &["java"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "Kotlin",
        exts: &["kt", "kts"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "C#",
        exts: &["cs"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "Swift",
        exts: &["swift"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "Scala",
        exts: &["scala"],
        line: &["//"],
        block: C_LIKE,
    },
    Lang {
        name: "Ruby",
        exts: &["rb"],
        line: &["#"],
        block: None,
    },
    Lang {
        name: "Shell",
        exts: &["sh", "bash", "zsh"],
        line: &["#"],
        block: None,
    },
    Lang {
        name: "Perl",
        exts: &["pl", "pm"],
        line: &["#"],
        block: None,
    },
    Lang {
        name: "R",
        exts: &["r"],
        line: &["#"],
        block: None,
    },
    Lang {
        name: "PHP",
        exts: &["php"],
        line: &["//", "#"],
        block: C_LIKE,
    },
    Lang {
        name: "Lua",
        exts: &["lua"],
        line: &["--"],
        block: None,
    },
    Lang {
        name: "SQL",
        exts: &["sql"],
        line: &["--"],
        block: C_LIKE,
    },
    Lang {
        name: "Haskell",
        exts: &["hs"],
        line: &["--"],
        block: Some(("{-", "-}")),
    },
    Lang {
        name: "HTML",
        exts: &["html", "htm"],
        line: &[],
        block: Some(("<!--", "-->")),
    },
    Lang {
        name: "XML",
        exts: &["xml", "svg"],
        line: &[],
        block: Some(("<!--", "-->")),
    },
    Lang {
        name: "CSS",
        exts: &["css", "scss", "less"],
        line: &[],
        block: C_LIKE,
    },
    Lang {
        name: "Markdown",
        exts: &["md", "markdown"],
        line: &[],
        block: Some(("<!--", "-->")),
    },
    Lang {
        name: "YAML",
        exts: &["yaml", "yml"],
        line: &["#"],
        block: None,
    },
    Lang {
        name: "TOML",
        exts: &["toml"],
        line: &["#"],
        block: None,
    },
    Lang {
        name: "JSON",
        exts: &["json"],
        line: &[],
        block: None,
    },
    Lang {
        name: "Makefile",
        exts: &["mk"],
        line: &["#"],
        block: None,
    },
];

fn language(path: &Path) -> Option<&'static Lang> {
    let name = path.file_name()?.to_str()?;
    if name == "Makefile" || name == "makefile" {
        return LANGS.iter().find(|l| l.name == "Makefile");
    }
    if name == "Dockerfile" {
        return None;
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    LANGS.iter().find(|l| l.exts.contains(&ext.as_str()))
}

/// Counts of one file or one language.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineCounts {
    /// Files counted.
    pub files: u64,
    /// Lines with code.
    pub code: u64,
    /// Lines with only a comment.
    pub comment: u64,
    /// Lines with only whitespace.
    pub blank: u64,
}

impl LineCounts {
    fn add(&mut self, o: LineCounts) {
        self.files += o.files;
        self.code += o.code;
        self.comment += o.comment;
        self.blank += o.blank;
    }

    fn lines(self) -> u64 {
        self.code + self.comment + self.blank
    }

    fn to_json(self) -> Value {
        json!({"files": self.files, "lines": self.lines(), "code": self.code, "comment": self.comment, "blank": self.blank})
    }
}

/// Classifies the lines of `text` written in `lang`.
fn count_lines(text: &str, lang: &Lang) -> LineCounts {
    let mut c = LineCounts {
        files: 1,
        ..LineCounts::default()
    };
    let mut in_block = false;
    for line in text.lines() {
        let mut rest = line.trim();
        if rest.is_empty() && !in_block {
            c.blank += 1;
            continue;
        }
        let mut has_code = false;
        let mut has_comment = in_block;
        while !rest.is_empty() {
            if in_block {
                let end = lang.block.map_or("", |b| b.1);
                match rest.find(end) {
                    Some(at) => {
                        rest = rest[at + end.len()..].trim_start();
                        in_block = false;
                    }
                    None => rest = "",
                }
                continue;
            }
            if lang.line.iter().any(|p| rest.starts_with(p)) {
                has_comment = true;
                break;
            }
            if let Some((open, _)) = lang.block {
                if let Some(rest2) = rest.strip_prefix(open) {
                    has_comment = true;
                    in_block = true;
                    rest = rest2;
                    continue;
                }
            }
            // Code up to the next comment opener, if any.
            has_code = true;
            let next = lang
                .line
                .iter()
                .copied()
                .chain(lang.block.map(|b| b.0))
                .filter_map(|p| rest.find(p))
                .min();
            match next {
                Some(at) if at > 0 => rest = &rest[at..],
                _ => rest = "",
            }
        }
        if has_code {
            c.code += 1;
        } else if has_comment {
            c.comment += 1;
        } else {
            c.blank += 1;
        }
    }
    c
}

fn patterns(params: &Value, key: &str) -> Result<Vec<glob::Pattern>, ActionError> {
    let list: Vec<&str> = match params.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    ActionError::invalid_parameters(format!(
                        "`{key}` must be a list of glob patterns (strings), found {v}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ActionError::invalid_parameters(format!(
                "`{key}` must be a list of glob patterns, found {other}"
            )));
        }
    };
    list.into_iter()
        .map(|p| {
            glob::Pattern::new(p).map_err(|e| {
                ActionError::invalid_parameters(format!("`{key}`: bad glob pattern `{p}`: {e}"))
            })
        })
        .collect()
}

/// Whether `rel` (with `/` separators) matches one of `pats`; a pattern
/// without `/` also matches the file name alone (`*.py` matches `a/b.py`).
fn matches(pats: &[glob::Pattern], rel: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    let name = rel.rsplit('/').next().unwrap_or(rel);
    pats.iter().any(|p| {
        p.matches_with(rel, opts) || (!p.as_str().contains('/') && p.matches_with(name, opts))
    })
}

fn size_param(params: &Value) -> Result<u64, ActionError> {
    const DEFAULT: u64 = 1024 * 1024;
    match params.get("max_file_size") {
        None | Some(Value::Null) => Ok(DEFAULT),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            ActionError::invalid_parameters(
                "`max_file_size` must be a non-negative number of bytes",
            )
        }),
        Some(Value::String(s)) => parse_size(s).ok_or_else(|| {
            ActionError::invalid_parameters(format!(
                "`max_file_size`: `{s}` is not a size; write e.g. 1048576, \"512KB\" or \"1MB\""
            ))
        }),
        Some(other) => Err(ActionError::invalid_parameters(format!(
            "`max_file_size` must be a number of bytes or a size like \"1MB\", found {other}"
        ))),
    }
}

/// `"1MB"`, `"512 KiB"`, `"100"` → bytes (K/M/G are powers of 1024, as the seed's configs mean them).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let n: f64 = s[..digits_end].parse().ok()?;
    let unit = s[digits_end..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    let v = n * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// `code.stats {path = ".", include, exclude, max_file_size = "1MB", hidden = false}` →
/// `{path, files, lines, code, comment, blank, languages: {NAME: {files, lines, code, comment, blank}},
/// code_by_language: {NAME: code lines}, skipped: {unknown_language, too_large, not_text}}`.
///
/// `include`/`exclude` are glob patterns matched against the path relative to
/// `path` (`*` also crosses `/`; a pattern without `/` also matches the bare
/// file name): with `include`, only matching files count; `exclude` wins.
#[derive(Debug)]
pub struct Stats;

#[async_trait]
impl Action for Stats {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = params
            .get("path")
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ActionError::invalid_parameters("`path` must be a relative directory path")
                })
            })
            .transpose()?
            .unwrap_or_else(|| ".".to_owned());
        let root = confine(&ctx.work_dir, &rel)?;
        let include = patterns(&params, "include")?;
        let exclude = patterns(&params, "exclude")?;
        let max_size = size_param(&params)?;
        let hidden = params
            .get("hidden")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let cancel = ctx.cancel.clone();
        blocking(move || {
            let meta = std::fs::symlink_metadata(&root).map_err(|e| {
                ActionError::permanent("IoError", format!("cannot read directory `{rel}`: {e}"))
            })?;
            if !meta.is_dir() {
                return Err(ActionError::permanent(
                    "IoError",
                    format!("`{rel}` is not a directory"),
                ));
            }
            let mut by_lang: BTreeMap<&'static str, LineCounts> = BTreeMap::new();
            let (mut unknown, mut too_large, mut not_text) = (0u64, 0u64, 0u64);
            let walker = walkdir::WalkDir::new(&root)
                .follow_links(false)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || hidden || !e.file_name().to_string_lossy().starts_with('.')
                });
            for entry in walker {
                if cancel.is_cancelled() {
                    return Err(ActionError::retryable("Cancelled", "code.stats was cancelled"));
                }
                let entry = entry.map_err(|e| {
                    ActionError::permanent("IoError", format!("cannot walk `{rel}`: {e}"))
                })?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let path = entry.path();
                let inner = path
                    .strip_prefix(&root)
                    .unwrap_or(path)
                    .to_string_lossy()
                    .replace('\\', "/");
                if (!include.is_empty() && !matches(&include, &inner)) || matches(&exclude, &inner)
                {
                    continue;
                }
                let Some(lang) = language(path) else {
                    unknown += 1;
                    continue;
                };
                let len = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                if len > max_size {
                    too_large += 1;
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(path) else {
                    not_text += 1;
                    continue;
                };
                by_lang
                    .entry(lang.name)
                    .or_default()
                    .add(count_lines(&text, lang));
            }
            let mut total = LineCounts::default();
            let mut languages = Map::new();
            let mut code_by_language = Map::new();
            for (name, c) in &by_lang {
                total.add(*c);
                languages.insert((*name).to_owned(), c.to_json());
                code_by_language.insert((*name).to_owned(), json!(c.code));
            }
            Ok(json!({
                "path": rel,
                "files": total.files,
                "lines": total.lines(),
                "code": total.code,
                "comment": total.comment,
                "blank": total.blank,
                "languages": languages,
                "code_by_language": code_by_language,
                "skipped": {"unknown_language": unknown, "too_large": too_large, "not_text": not_text},
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(name: &str) -> &'static Lang {
        LANGS.iter().find(|l| l.name == name).expect("language")
    }

    #[test]
    fn rust_lines_are_classified() {
        let src = "// header\n\nfn main() { // trailing\n    /* block\n       still */\n    let x = 1; /* c */\n}\n";
        let c = count_lines(src, lang("Rust"));
        assert_eq!((c.code, c.comment, c.blank), (3, 3, 1), "{c:?}");
    }

    #[test]
    fn python_and_html_comments() {
        let c = count_lines("# a\nx = 1\n\n  # b\n", lang("Python"));
        assert_eq!((c.code, c.comment, c.blank), (1, 2, 1));
        let c = count_lines("<!-- a\nb -->\n<p>x</p>\n", lang("HTML"));
        assert_eq!((c.code, c.comment, c.blank), (1, 2, 0));
    }

    #[test]
    fn code_after_a_block_comment_on_one_line_is_code() {
        let c = count_lines("/* a */ int x;\n", lang("C"));
        assert_eq!((c.code, c.comment), (1, 0));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1MB"), Some(1 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1TB"), None);
    }

    #[test]
    fn globs_match_paths_and_names() {
        let p = |s: &str| vec![glob::Pattern::new(s).expect("pattern")];
        assert!(matches(&p("*.py"), "a/b/c.py"));
        assert!(!matches(&p("*.py"), "a/b/c.rs"));
        assert!(matches(&p("*/node_modules/*"), "web/node_modules/x.js"));
        assert!(!matches(&p("src/*.rs"), "lib/x.rs"));
    }
}
