//! The healer's domain types: what a diagnostic is, how it is classified.
//!
//! Free of actix and of serde's HTTP concerns beyond (de)serialization, so the analysis can run
//! in the service, in `helix heal` and in benchmarks alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What kind of problem a diagnostic is (the taxonomy of the error corpus). Security problems
/// (a leaked secret, a failed integrity check) keep their nearest category and get the
/// `security` failure class from their pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Module, package, crate, header or library not found; linker undefined reference.
    MissingDependency,
    /// Undefined name, attribute, method, import name.
    UnresolvedSymbol,
    SyntaxError,
    /// Mismatched types, wrong argument count, not callable.
    TypeError,
    /// Borrow checker.
    OwnershipError,
    /// Key, index, zero-division, decode errors at run time.
    RuntimeError,
    /// Assertion failures.
    TestFailure,
    FileNotFound,
    PermissionDenied,
    CommandNotFound,
    /// Connection refused or reset, timeouts, HTTP 429/5xx/529 from providers.
    Transient,
    /// Recursion depth, out of memory, disk full, quota.
    ResourceExhausted,
    Unknown,
}

impl Category {
    pub const ALL: [Category; 13] = [
        Category::MissingDependency,
        Category::UnresolvedSymbol,
        Category::SyntaxError,
        Category::TypeError,
        Category::OwnershipError,
        Category::RuntimeError,
        Category::TestFailure,
        Category::FileNotFound,
        Category::PermissionDenied,
        Category::CommandNotFound,
        Category::Transient,
        Category::ResourceExhausted,
        Category::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::MissingDependency => "missing_dependency",
            Category::UnresolvedSymbol => "unresolved_symbol",
            Category::SyntaxError => "syntax_error",
            Category::TypeError => "type_error",
            Category::OwnershipError => "ownership_error",
            Category::RuntimeError => "runtime_error",
            Category::TestFailure => "test_failure",
            Category::FileNotFound => "file_not_found",
            Category::PermissionDenied => "permission_denied",
            Category::CommandNotFound => "command_not_found",
            Category::Transient => "transient",
            Category::ResourceExhausted => "resource_exhausted",
            Category::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The failure class a category implies when nothing more specific is known.
    pub fn default_failure_class(self) -> FailureClass {
        match self {
            Category::Transient => FailureClass::Transient,
            Category::MissingDependency
            | Category::CommandNotFound
            | Category::PermissionDenied
            | Category::ResourceExhausted => FailureClass::Environment,
            _ => FailureClass::Deterministic,
        }
    }
}

/// How a failure should be handled: retried as is, retried with a fix, fixed in the
/// environment, or escalated at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Retrying the same thing may work (network, rate limits, overload).
    Transient,
    /// The same input fails the same way; the code or input must change.
    Deterministic,
    /// Something outside the code is missing or wrong (dependency, command, permission, disk).
    Environment,
    /// Stop and escalate: leaked secret, vulnerability, failed integrity check.
    Security,
}

impl FailureClass {
    pub fn parse(s: &str) -> Option<FailureClass> {
        match s {
            "transient" => Some(FailureClass::Transient),
            "deterministic" => Some(FailureClass::Deterministic),
            "environment" => Some(FailureClass::Environment),
            "security" => Some(FailureClass::Security),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

/// How sure the healer is of a diagnostic's category and key, by what decided them: a pattern of
/// the knowledge base written for this error (`high`), a cue any tool's output can carry (a
/// dedicated parser's format, a tool-agnostic keyword pattern: `medium`), or nothing but the fact
/// that the command failed (`low`, category `unknown`). A caller that acts on its own (applies a
/// fix, merges two failures) should ask for `high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticConfidence {
    Low,
    Medium,
    High,
}

/// Where in the user's code a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Location {
    #[schema(example = "src/main.rs")]
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 42)]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 17)]
    pub column: Option<u32>,
}

/// A replacement the tool itself proposes (rustc's structured suggestions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Suggestion {
    /// What the tool says about it, e.g. "add `;` here".
    pub message: String,
    pub file: String,
    /// Byte range in the file to replace.
    pub byte_start: i64,
    pub byte_end: i64,
    pub line_start: i32,
    pub replacement: String,
    /// rustc's applicability: `MachineApplicable`, `MaybeIncorrect`, `HasPlaceholders`,
    /// `Unspecified`.
    pub applicability: String,
}

/// A diagnostic as a parser found it, before classification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawDiagnostic {
    /// The tool that printed it: `python`, `pytest`, `rustc`, `gcc`, `ld`, `javac`, `node`,
    /// `npm`, `tsc`, `go`, `bash`, `openai`, `anthropic`, `generic`, ...
    pub tool: String,
    pub severity: Option<Severity>,
    /// The headline: one line that says what went wrong, e.g.
    /// `ModuleNotFoundError: No module named 'yaml'` or `error[E0425]: cannot find value ...`.
    pub message: String,
    /// A code the tool gave the diagnostic (`E0425`, `TS2304`, `ENOENT`, an HTTP status).
    pub code: Option<String>,
    pub location: Option<Location>,
    /// Lines around the headline that carry detail (labels, notes, source lines, the symbol
    /// line of javac); patterns may look for their key there.
    pub context: Vec<String>,
    /// Parameters the parser itself knows (e.g. `test` for a failed test, `status`).
    pub params: BTreeMap<String, String>,
    /// A category the parser knows from the format alone (a test runner's failure, a syntax
    /// error block), used when no pattern matches.
    pub category_hint: Option<Category>,
    /// First and last line (0-based) of the output this diagnostic covers.
    pub span: (usize, usize),
    /// How likely this is the root cause, higher first; ties go to the earlier diagnostic.
    pub rank: i32,
    /// Replacements the tool proposes.
    pub suggestions: Vec<Suggestion>,
}

/// Ranks used by parsers for [`RawDiagnostic::rank`].
pub mod rank {
    /// The exception that started a chain, a compiler error, a failed test's cause.
    pub const ROOT: i32 = 100;
    pub const ERROR: i32 = 80;
    /// An exception raised while handling another.
    pub const CONSEQUENCE: i32 = 60;
    /// A test failure summary line whose cause is reported elsewhere too.
    pub const SUMMARY: i32 = 50;
    pub const WARNING: i32 = 30;
    /// A line that only looks like an error (generic keyword match).
    pub const GENERIC: i32 = 10;
}

/// Parameters extracted for a diagnostic, by name.
pub type Params = BTreeMap<String, String>;
