//! Rust: `use` and `extern crate` of crates a `Cargo.toml` does not declare.
//!
//! Since the 2018 edition `use x::y` may name a crate or an item in scope (a module, an enum),
//! so every module and enum the crates define, `as` aliases and imported leaves count as local
//! (a `fn bstr` does not hide the crate `bstr`: a function is no path root), and only lowercase
//! names are taken for crates. `use {a::b, c::d};` groups (one `use` per file, as rustfmt's
//! `imports_granularity = "One"` writes them) are read over as many lines as they take.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use super::{Checked, Missing, Workspace, dir, lines};
use crate::patterns::PatternSet;

const BUILTIN: &[&str] = &["std", "core", "alloc", "proc_macro", "test", "crate", "self", "super", "Self"];

static USE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?use\s+(::)?([A-Za-z_][A-Za-z0-9_]*)\s*(::|;|\s+as\b)")
        .expect("use regex")
});
/// `use {a::b, c};` (rustfmt's one-`use` style), the group possibly over several lines.
static USE_GROUP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?use\s+(?:::)?\{").expect("use group regex")
});
static EXTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:#\[[^\]]*\]\s*)*(?:pub\s+)?extern\s+crate\s+([A-Za-z_][A-Za-z0-9_]*)")
        .expect("extern regex")
});
static ITEM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:mod|enum)\s+([A-Za-z_][A-Za-z0-9_]*)|\bas\s+([A-Za-z_][A-Za-z0-9_]*)|\b(?:crate|self|super)(?:::[a-z_][a-z0-9_]*)*::\{?([a-z_][a-z0-9_]*)\s*[;,}]",
    )
    .expect("item regex")
});

/// A crate: its directory, declared dependency names (as code names them) and its own names.
struct Crate {
    dir: String,
    deps: BTreeSet<String>,
    own: BTreeSet<String>,
}

fn crates(ws: &Workspace<'_>) -> Vec<Crate> {
    let mut out = Vec::new();
    for (path, text) in ws.named("Cargo.toml") {
        let Ok(v) = toml::from_str::<toml::Table>(text) else { continue };
        let mut deps = BTreeSet::new();
        let mut tables: Vec<&toml::Table> = Vec::new();
        for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
            tables.extend(v.get(key).and_then(|t| t.as_table()));
            tables.extend(v.get("workspace").and_then(|w| w.get(key)).and_then(|t| t.as_table()));
        }
        for (_, target) in v.get("target").and_then(|t| t.as_table()).into_iter().flatten() {
            for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
                tables.extend(target.get(key).and_then(|t| t.as_table()));
            }
        }
        for t in tables {
            // the key is the name code uses (a renamed dependency's `package` is not)
            deps.extend(t.keys().map(|k| k.replace('-', "_")));
        }
        let mut own = BTreeSet::new();
        if let Some(name) = v.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()) {
            own.insert(name.replace('-', "_"));
        }
        if let Some(name) = v.get("lib").and_then(|p| p.get("name")).and_then(|n| n.as_str()) {
            own.insert(name.replace('-', "_"));
        }
        for bins in v.get("bin").and_then(|b| b.as_array()).into_iter().flatten() {
            if let Some(name) = bins.get("name").and_then(|n| n.as_str()) {
                own.insert(name.replace('-', "_"));
            }
        }
        out.push(Crate { dir: dir(path).to_owned(), deps, own });
    }
    out
}

/// Where a line ends: in code, in a string literal (plain or raw with `#`s) or in a block
/// comment (nested to a depth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexed {
    Code,
    Str,
    Raw(usize),
    Comment(usize),
}

/// The state after `line`, starting in `state`: strings, raw strings, char literals, line and
/// (nested) block comments, tracked well enough to know where a line starts.
fn lex_line(line: &str, mut state: Lexed) -> Lexed {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match state {
            Lexed::Str => match b[i] {
                b'\\' => i += 1,
                b'"' => state = Lexed::Code,
                _ => {}
            },
            Lexed::Raw(hashes) => {
                if b[i] == b'"' && b[i + 1..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
                    state = Lexed::Code;
                    i += hashes;
                }
            }
            Lexed::Comment(depth) => {
                if b[i..].starts_with(b"*/") {
                    state = if depth <= 1 { Lexed::Code } else { Lexed::Comment(depth - 1) };
                    i += 1;
                } else if b[i..].starts_with(b"/*") {
                    state = Lexed::Comment(depth + 1);
                    i += 1;
                }
            }
            Lexed::Code => {
                if b[i..].starts_with(b"//") {
                    return Lexed::Code;
                } else if b[i..].starts_with(b"/*") {
                    state = Lexed::Comment(1);
                    i += 1;
                } else if b[i] == b'"' {
                    state = Lexed::Str;
                } else if b[i] == b'r' && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
                {
                    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                    if b.get(i + 1 + hashes) == Some(&b'"') {
                        state = Lexed::Raw(hashes);
                        i += hashes + 1;
                    }
                } else if b[i] == b'\'' {
                    // a char literal ('"', '\'', 'x'); a lifetime ('a) has no closing quote here
                    if b.get(i + 1) == Some(&b'\\') {
                        if let Some(end) = b[i + 2..].iter().position(|&c| c == b'\'') {
                            i += 2 + end;
                        }
                    } else if b.get(i + 2) == Some(&b'\'') {
                        i += 2;
                    }
                }
            }
        }
        i += 1;
    }
    state
}

/// The code of a line without its `//` comment (strings and block comments are tracked by the
/// caller).
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

pub(super) fn check(
    ws: &Workspace<'_>,
    _patterns: &PatternSet,
    checked: &mut Checked,
) -> Option<Vec<Missing>> {
    let sources: Vec<(&str, &str)> = ws.sources(&[".rs"]).collect();
    if sources.is_empty() {
        return None;
    }
    let crates = crates(ws);
    if crates.is_empty() {
        checked.skipped.push("rust: no Cargo.toml".to_owned());
        return None;
    }
    let owner = |path: &str| {
        crates
            .iter()
            .filter(|c| c.dir.is_empty() || path.starts_with(&format!("{}/", c.dir)))
            .max_by_key(|c| c.dir.len())
    };
    // the path roots the crates define (modules, enums, aliases, leaves imported from the crate
    // itself): a `use` of one is local. A sibling crate of the workspace is not: it must be
    // declared like any other.
    let mut local: BTreeSet<String> = BTreeSet::new();
    for (_, text) in &sources {
        for caps in ITEM.captures_iter(text) {
            if let Some(m) = caps.get(1).or_else(|| caps.get(2)).or_else(|| caps.get(3)) {
                local.insert(m.as_str().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for (path, text) in sources {
        let Some(krate) = owner(path) else { continue };
        checked.files += 1;
        let mut state = Lexed::Code;
        let mut group_depth = 0usize;
        for (n, raw) in lines(text) {
            // a line that starts inside a string or comment holds no `use` (a test's source text
            // in a string literal, `extern crate x;` in a doc example of a block comment)
            let starts_in_code = state == Lexed::Code;
            state = lex_line(raw, state);
            if !starts_in_code {
                continue;
            }
            let code = code_of(raw);
            let mut uses: Vec<(&str, bool, bool)> = Vec::new();
            if group_depth > 0 {
                group_roots(code, &mut group_depth, &mut uses);
            } else if let Some(m) = USE_GROUP.find(code) {
                group_depth = 1;
                group_roots(&code[m.end()..], &mut group_depth, &mut uses);
            } else if let Some(c) = USE.captures(code) {
                uses.push((c.get(2).map_or("", |m| m.as_str()), c.get(1).is_some(), false));
            } else if let Some(c) = EXTERN.captures(code) {
                uses.push((c.get(1).map_or("", |m| m.as_str()), true, true));
            }
            for (name, absolute, extern_crate) in uses {
                checked.imports += 1;
                let lowercase =
                    name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if BUILTIN.contains(&name)
                    || !lowercase
                    || krate.deps.contains(name)
                    || krate.own.contains(name)
                    || !absolute && local.contains(name)
                {
                    continue;
                }
                let col = code.find(name).map_or(1, |i| i + 1);
                let output = if extern_crate {
                    format!(
                        "error[E0463]: can't find crate for `{name}`\n --> {path}:{n}:1\n  |\n{n} | {}\n  | ^ can't find crate\n\n",
                        raw.trim()
                    )
                } else {
                    format!(
                        "error[E0432]: unresolved import `{name}`\n --> {path}:{n}:{col}\n  |\n{n} | {}\n  |     ^ use of unresolved module or unlinked crate `{name}`\n  |\n  = help: if you wanted to use a crate named `{name}`, use `cargo add {name}` to add it to your `Cargo.toml`\n\n",
                        raw.trim()
                    )
                };
                let manifest = if krate.dir.is_empty() {
                    "Cargo.toml".to_owned()
                } else {
                    format!("{}/Cargo.toml", krate.dir)
                };
                out.push(Missing {
                    check: "rust-crate",
                    file: path.to_owned(),
                    line: n,
                    name: name.to_owned(),
                    reason: format!("`{}` but {manifest} does not declare {name}", code.trim()),
                    output,
                    tool: "cargo",
                    root: krate.dir.clone(),
                });
            }
        }
    }
    Some(out)
}

/// The path roots of a `use { ... }` group's text (after its `{`, or a further line of it): the
/// first name of each item at the group's top level. `depth` is the brace depth inside the
/// group (1 right after its `{`), 0 once it closed.
fn group_roots<'a>(text: &'a str, depth: &mut usize, out: &mut Vec<(&'a str, bool, bool)>) {
    let b = text.as_bytes();
    let mut i = 0;
    let mut item_start = *depth == 1;
    while i < b.len() && *depth > 0 {
        let c = b[i];
        if item_start && *depth == 1 && (c.is_ascii_alphabetic() || c == b'_' || c == b':') {
            let start = if text[i..].starts_with("::") { i + 2 } else { i };
            let len = b[start..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            if len > 0 {
                out.push((&text[start..start + len], start > i, false));
            }
            item_start = false;
            i = start + len;
            continue;
        }
        match c {
            b'{' => *depth += 1,
            b'}' => *depth -= 1,
            b',' if *depth == 1 => item_start = true,
            c if c.is_ascii_whitespace() => {}
            _ if *depth == 1 => item_start = false,
            _ => {}
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_hide_use_lines() {
        let mut state = Lexed::Code;
        let mut starts = Vec::new();
        for line in [
            "const CODE: &str = \"\\",
            "extern crate snap;",
            "\";",
            "let r = r#\"use a::b;",
            "\"#; /* use c;",
            "use d; */ use real::X;",
            "let q = '\"'; let l: &'static str = \"x\";",
            "use after::Quote;",
        ] {
            starts.push(state == Lexed::Code);
            state = lex_line(line, state);
        }
        assert_eq!(starts, vec![true, false, false, true, false, false, true, true]);
    }

    #[test]
    fn use_groups_over_lines() {
        let mut depth = 1;
        let mut out = Vec::new();
        group_roots("", &mut depth, &mut out);
        group_roots("    grep_matcher::{Captures, Match},", &mut depth, &mut out);
        group_roots("    bstr::ByteSlice, ::memchr::memchr,", &mut depth, &mut out);
        group_roots("    crate::util::{a, b},", &mut depth, &mut out);
        group_roots("};", &mut depth, &mut out);
        let names: Vec<&str> = out.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(names, vec!["grep_matcher", "bstr", "memchr", "crate"]);
        assert_eq!(depth, 0);
        let mut depth = 1;
        let mut out = Vec::new();
        group_roots("serde::Serialize, regex::Regex};", &mut depth, &mut out);
        assert_eq!(out.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(), vec!["serde", "regex"]);
    }

    #[test]
    fn use_lines() {
        let name = |l: &str| USE.captures(l).and_then(|c| c.get(2)).map(|m| m.as_str().to_owned());
        assert_eq!(name("use serde_json::Value;").as_deref(), Some("serde_json"));
        assert_eq!(name("pub(crate) use anyhow::{Context, Result};").as_deref(), Some("anyhow"));
        assert_eq!(name("    use rand;").as_deref(), Some("rand"));
        assert_eq!(name("#[cfg(test)] use proptest::prelude::*;").as_deref(), Some("proptest"));
        assert_eq!(name("let used = 1;"), None);
        assert_eq!(
            EXTERN.captures("extern crate libc;").and_then(|c| c.get(1)).map(|m| m.as_str()),
            Some("libc")
        );
    }
}
