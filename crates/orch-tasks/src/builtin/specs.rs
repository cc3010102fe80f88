//! The parameters each built-in action declares (`Action::spec`): what `orch validate` checks a step's `parameters` against and what `orch schema` shows.
//!
//! Each table says what the action reads: a key it does not read is
//! refused by validation (except by `core.noop`, which returns whatever it
//! is given), and a type is the set of JSON types the action accepts.
//! `null` counts as "not given" everywhere. docs/actions.md describes the
//! same parameters; a test checks that every one named there is declared.

use orch_model::{ActionSpec, ParamSpec, ParamType as T};

const fn req(name: &'static str, ty: T, description: &'static str) -> ParamSpec {
    ParamSpec::required(name, ty, description)
}

const fn opt(name: &'static str, ty: T, description: &'static str) -> ParamSpec {
    ParamSpec::optional(name, ty, description)
}

const SCALAR: T = T::STRING.or(T::NUMBER).or(T::BOOLEAN);
const GLOBS: T = T::STRING.or(T::ARRAY);

/// `core.noop`.
pub static NOOP: ActionSpec = ActionSpec {
    description: "Returns its parameters.",
    params: &[],
    open: true,
};

/// `core.sleep`.
pub static SLEEP: ActionSpec = ActionSpec {
    description: "Waits `ms` milliseconds (cancellable).",
    params: &[req("ms", T::INTEGER, "milliseconds to wait")],
    open: false,
};

/// `core.fail`.
pub static FAIL: ActionSpec = ActionSpec {
    description: "Always fails, with type `Failure` (for tests and demos).",
    params: &[
        opt("message", T::STRING, "the failure's message"),
        opt(
            "retryable",
            T::BOOLEAN,
            "whether a retry may succeed (default true)",
        ),
    ],
    open: false,
};

/// `core.set`.
pub static SET: ActionSpec = ActionSpec {
    description: "Returns `value`.",
    params: &[req("value", T::ANY, "the step's result")],
    open: false,
};

/// `core.coalesce`.
pub static COALESCE: ActionSpec = ActionSpec {
    description: "Returns the first of `values` that is not null or \"\".",
    params: &[req("values", T::ARRAY, "the candidates, in order")],
    open: false,
};

const PROCESS_ENV: ParamSpec = opt(
    "env",
    T::OBJECT,
    "environment variables for the process, NAME: value",
);
const PROCESS_CWD: ParamSpec = opt(
    "cwd",
    T::STRING,
    "the directory it runs in (default: the work directory)",
);
const PROCESS_STDIN: ParamSpec = opt("stdin", T::ANY, "text written to its standard input");

/// `shell.exec`.
pub static EXEC: ActionSpec = ActionSpec {
    description: "Runs a program directly (no shell); each of `args` is one argument.",
    params: &[
        req(
            "program",
            T::STRING,
            "the program to run (a path, or a name found on PATH)",
        ),
        opt("args", T::ARRAY, "its arguments, one list entry each"),
        PROCESS_ENV,
        PROCESS_CWD,
        PROCESS_STDIN,
    ],
    open: false,
};

/// `shell.script`.
pub static SCRIPT: ActionSpec = ActionSpec {
    description: "Runs `script` with `sh -c`; values reach it only through `env` and `args`.",
    params: &[
        req(
            "script",
            T::STRING,
            "the shell script (no ${...} in it: pass values in env or args)",
        ),
        opt("args", T::ARRAY, "positional parameters, $1, $2, ..."),
        PROCESS_ENV,
        PROCESS_CWD,
        PROCESS_STDIN,
    ],
    open: false,
};

/// `fs.read`.
pub static READ: ActionSpec = ActionSpec {
    description: "Reads a file beneath the work directory.",
    params: &[
        req(
            "path",
            T::STRING,
            "the file, relative to the work directory",
        ),
        opt("parse", T::STRING, "\"json\" to parse it as JSON"),
    ],
    open: false,
};

/// `fs.write`.
pub static WRITE: ActionSpec = ActionSpec {
    description: "Writes a file beneath the work directory, atomically.",
    params: &[
        req(
            "path",
            T::STRING,
            "the file, relative to the work directory",
        ),
        req(
            "content",
            T::ANY,
            "what to write (a value that is not a string is written as JSON)",
        ),
        opt(
            "create_dirs",
            T::BOOLEAN,
            "create missing directories (default true)",
        ),
    ],
    open: false,
};

/// `fs.copy`.
pub static COPY: ActionSpec = ActionSpec {
    description: "Copies a file beneath the work directory.",
    params: &[
        req("from", T::STRING, "the file to copy"),
        req("to", T::STRING, "where to write the copy"),
    ],
    open: false,
};

/// `fs.mkdir`.
pub static MKDIR: ActionSpec = ActionSpec {
    description: "Creates a directory and its parents.",
    params: &[req(
        "path",
        T::STRING,
        "the directory, relative to the work directory",
    )],
    open: false,
};

/// `fs.list`.
pub static LIST: ActionSpec = ActionSpec {
    description: "Lists a directory.",
    params: &[opt("path", T::STRING, "the directory (default \".\")")],
    open: false,
};

/// `code.stats`.
pub static STATS: ActionSpec = ActionSpec {
    description: "Counts files and code, comment and blank lines by language.",
    params: &[
        opt("path", T::STRING, "the directory (default \".\")"),
        opt("include", GLOBS, "glob patterns of the files to count"),
        opt("exclude", GLOBS, "glob patterns of files to leave out"),
        opt(
            "max_file_size",
            T::INTEGER.or(T::STRING),
            "larger files are skipped: bytes, or text like \"1MB\" (default 1 MiB)",
        ),
        opt(
            "hidden",
            T::BOOLEAN,
            "count hidden files and directories (default false)",
        ),
    ],
    open: false,
};

const CHART_PARAMS: &[ParamSpec] = &[
    req(
        "data",
        T::OBJECT.or(T::ARRAY),
        "{label: number}, or a list of numbers, [x, y] pairs or {label, value} objects",
    ),
    req("output", T::STRING, "the .svg file to write"),
    opt("title", SCALAR, "the chart's title"),
    opt("x_label", SCALAR, "the x axis's label"),
    opt("y_label", SCALAR, "the y axis's label"),
    opt(
        "width",
        T::NUMBER.or(T::STRING),
        "pixels, 200 to 4000 (default 800)",
    ),
    opt(
        "height",
        T::NUMBER.or(T::STRING),
        "pixels, 200 to 4000 (default 480)",
    ),
    opt("color", T::STRING, "a colour name or #hex"),
];

/// `chart.bar`.
pub static BAR: ActionSpec = ActionSpec {
    description: "Draws a bar chart as an SVG file.",
    params: CHART_PARAMS,
    open: false,
};

/// `chart.line`.
pub static LINE: ActionSpec = ActionSpec {
    description: "Draws a line chart as an SVG file.",
    params: CHART_PARAMS,
    open: false,
};

/// `report.markdown`.
pub static MARKDOWN: ActionSpec = ActionSpec {
    description: "Writes a Markdown report from a template and values.",
    params: &[
        req("output", T::STRING, "the file to write"),
        opt("title", T::STRING, "the report's title"),
        opt(
            "template",
            T::STRING,
            "text with {{name}} placeholders filled from `values`",
        ),
        opt("values", T::OBJECT, "the placeholders' values"),
        opt("sections", T::OBJECT, "heading: value, one section each"),
    ],
    open: false,
};

/// `data.aggregate`.
pub static AGGREGATE: ActionSpec = ActionSpec {
    description: "Summarizes each CSV file of a directory as JSON.",
    params: &[
        opt(
            "input",
            T::STRING,
            "the directory of .csv files (default data/raw)",
        ),
        opt(
            "output",
            T::STRING,
            "where the summaries go (default data/processed)",
        ),
        opt(
            "group_by",
            T::STRING,
            "a column to group by (\"\" for none)",
        ),
    ],
    open: false,
};
