//! C and C++: `#include`s of headers a known `-dev` package provides (the pattern base's
//! `[maps.debian]`), against the system packages the workspace declares or the caller says are
//! installed.
//!
//! Whether a header is installed is a fact of the machine, not of the workspace. So the check
//! runs only when it knows something about the machine: the caller's `installed_packages`
//! (`helix check` and the orchestrator send the local `dpkg` list), or system packages the
//! workspace declares (a Dockerfile's or CI workflow's `apt-get install`, `apt.txt`, `Aptfile`,
//! `packages.txt`, `debian/control` `Build-Depends`), which a fresh build machine would install.

use std::collections::BTreeSet;

use super::{Checked, Missing, Workspace, base, lines};
use crate::patterns::PatternSet;

/// System packages the workspace's build recipes install.
fn declared(ws: &Workspace<'_>) -> Option<BTreeSet<String>> {
    let mut found = false;
    let mut pkgs = BTreeSet::new();
    for (path, text) in &ws.files {
        let name = base(path);
        if matches!(name, "apt.txt" | "Aptfile" | "packages.txt") {
            found = true;
            pkgs.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        } else if path.ends_with("debian/control") {
            found = true;
            let mut in_deps = false;
            for l in text.lines() {
                if let Some((k, v)) = l.split_once(':')
                    && !l.starts_with([' ', '\t'])
                {
                    in_deps = k.starts_with("Build-Depends");
                    if in_deps {
                        pkgs.extend(deb_list(v));
                    }
                } else if in_deps {
                    pkgs.extend(deb_list(l));
                }
            }
        } else if super::is_recipe(path) {
            let words = super::installs(text, &["apt-get", "apt", "aptitude"]);
            found |= !words.is_empty() || text.contains("apt-get install") || text.contains("apt install");
            pkgs.extend(words.into_iter().map(|w| w.split('=').next().unwrap_or(&w).to_owned()));
        }
    }
    found.then_some(pkgs)
}

fn deb_list(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split([',', '|'])
        .filter_map(|p| p.split_whitespace().next())
        .map(|p| p.split(':').next().unwrap_or(p).to_owned())
        .filter(|p| !p.is_empty())
}

/// `#include`s of a file outside conditional blocks (include guards are not conditions).
fn includes(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut guard: Option<(usize, String)> = None;
    let mut guard_depth = usize::MAX;
    for (n, raw) in lines(text) {
        let t = raw.trim_start();
        let Some(directive) = t.strip_prefix('#') else { continue };
        let d = directive.trim_start();
        let word = d.split_whitespace().next().unwrap_or("");
        match word {
            "if" | "ifdef" | "ifndef" => {
                depth += 1;
                if word == "ifndef" && depth == 1 {
                    guard = Some((depth, d["ifndef".len()..].trim().to_owned()));
                }
            }
            "define" => {
                if let Some((gd, name)) = guard.take()
                    && d["define".len()..].split_whitespace().next() == Some(name.as_str())
                {
                    guard_depth = gd;
                }
            }
            "endif" => {
                if depth == guard_depth {
                    guard_depth = usize::MAX;
                }
                depth = depth.saturating_sub(1);
            }
            "include" => {
                let rest = d["include".len()..].trim();
                let (angle, close) = match rest.chars().next() {
                    Some('<') => (true, '>'),
                    Some('"') => (false, '"'),
                    _ => continue,
                };
                let Some(end) = rest[1..].find(close) else { continue };
                let conditional = depth > usize::from(guard_depth != usize::MAX);
                if !conditional {
                    out.push((n, rest[1..1 + end].to_owned(), angle));
                }
            }
            _ => {}
        }
        if word != "define" && word != "ifndef" {
            guard = None;
        }
    }
    out
}

pub(super) fn check(
    ws: &Workspace<'_>,
    patterns: &PatternSet,
    checked: &mut Checked,
) -> Option<Vec<Missing>> {
    const EXTS: &[&str] = &[".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"];
    let sources: Vec<(&str, &str)> = ws.sources(EXTS).collect();
    if sources.is_empty() {
        return None;
    }
    let declared = declared(ws);
    let installed: Option<BTreeSet<String>> = ws
        .env
        .installed_packages
        .as_ref()
        .map(|v| v.iter().map(|p| p.split(':').next().unwrap_or(p).to_owned()).collect());
    if declared.is_none() && installed.is_none() {
        checked.skipped.push(
            "c: no system packages declared (Dockerfile, apt.txt, debian/control) and none reported installed".to_owned(),
        );
        return None;
    }
    let debian = patterns.map("debian");
    // every path and every tail of one after a `/`: a header of the project itself, found in O(1)
    let suffixes: BTreeSet<&str> = ws
        .paths
        .iter()
        .flat_map(|p| std::iter::once(p.as_str()).chain(p.match_indices('/').map(move |(i, _)| &p[i + 1..])))
        .collect();
    let mut out = Vec::new();
    for (path, text) in sources {
        checked.files += 1;
        for (line, header, angle) in includes(text) {
            checked.imports += 1;
            let Some(pkg) = debian.and_then(|m| m.get(&header)) else { continue };
            // a header of the project itself
            if suffixes.contains(header.as_str()) {
                continue;
            }
            let have = |set: &Option<BTreeSet<String>>| set.as_ref().is_some_and(|s| s.contains(pkg));
            if have(&declared) || have(&installed) {
                continue;
            }
            let (open, close) = if angle { ('<', '>') } else { ('"', '"') };
            let why = match (&declared, &installed) {
                (Some(_), Some(_)) => "neither declared by the build recipes nor installed",
                (Some(_), None) => "not installed by the build recipes",
                _ => "not installed",
            };
            out.push(Missing {
                check: "c-header",
                file: path.to_owned(),
                line,
                name: header.clone(),
                reason: format!("#include {open}{header}{close} needs {pkg}, {why}"),
                output: format!(
                    "{path}:{line}:10: fatal error: {header}: No such file or directory\n{line:>5} | #include {open}{header}{close}\n      |          ^~~~~~~~~~~~~\ncompilation terminated.\n"
                ),
                tool: "gcc",
                root: String::new(),
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_are_not_conditions() {
        let src = "#ifndef APP_H\n#define APP_H\n#include <curl/curl.h>\n#ifdef HAVE_ZLIB\n#include <zlib.h>\n#endif\n#include \"local.h\"\n#endif\n";
        let got: Vec<(usize, String)> = includes(src).into_iter().map(|(n, h, _)| (n, h)).collect();
        assert_eq!(got, vec![(3, "curl/curl.h".to_owned()), (7, "local.h".to_owned())]);
        let plain = "#include <stdio.h>\n#if defined(USE_SSL)\n#include <openssl/ssl.h>\n#endif\n";
        let got: Vec<String> = includes(plain).into_iter().map(|(_, h, _)| h).collect();
        assert_eq!(got, vec!["stdio.h".to_owned()]);
    }
}
