//! JavaScript and TypeScript: bare import specifiers against `package.json`.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use super::{Checked, Missing, Workspace, dir, lines};
use crate::patterns::PatternSet;

/// `require('module').builtinModules` of Node.js 20 (without `_private` ones).
const BUILTINS: &str = "assert async_hooks buffer child_process cluster console constants crypto dgram \
    diagnostics_channel dns domain events fs http http2 https inspector module net os path \
    perf_hooks process punycode querystring readline repl stream string_decoder sys timers tls \
    trace_events tty url util v8 vm wasi worker_threads zlib test sqlite";

/// What well-known packages bring in (hoisted into `node_modules`, so a bare import resolves).
const TRANSITIVE: &str = "\
express: body-parser debug cookie qs send serve-static mime accepts statuses\n\
react-dom: scheduler react\n\
next: react react-dom styled-jsx @next/env postcss\n\
jest: @jest/globals expect jest-mock\n\
vitest: @vitest/expect chai vite\n\
webpack: webpack-sources tapable enhanced-resolve\n\
eslint: @eslint/js espree eslint-scope\n\
typescript-eslint: @typescript-eslint/parser @typescript-eslint/eslint-plugin\n\
@babel/core: @babel/parser @babel/traverse @babel/types @babel/generator\n\
axios: follow-redirects form-data proxy-from-env\n\
mongoose: mongodb bson\n\
@nestjs/core: rxjs reflect-metadata @nestjs/common\n\
vite: esbuild rollup postcss\n\
@vitejs/plugin-react: @babel/core\n\
react-scripts: react-dev-utils webpack jest eslint @testing-library/jest-dom\n\
ts-jest: jest typescript";

static ROWS: LazyLock<super::Transitive> = LazyLock::new(|| super::transitive(TRANSITIVE));

static IMPORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?:^|[^\w$.])(?:import|export)\s*(?:type\s+)?(?:[\w$*{}\s,]+?\s+from\s*)?['"]([^'"\n]+)['"]|(?:^|[^\w$.])(?:require|import)\s*\(\s*['"]([^'"\n]+)['"]\s*\)"#,
    )
    .expect("import regex")
});

/// Declared dependency names of a `package.json`, its name, and whether it is an ES module.
struct Manifest {
    dir: String,
    deps: BTreeSet<String>,
    name: Option<String>,
    module: bool,
}

fn manifests(ws: &Workspace<'_>) -> Vec<Manifest> {
    let mut out = Vec::new();
    for (path, text) in ws.named("package.json") {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { continue };
        let mut deps = BTreeSet::new();
        for section in ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"] {
            if let Some(o) = v.get(section).and_then(|d| d.as_object()) {
                deps.extend(o.keys().cloned());
            }
        }
        out.push(Manifest {
            dir: dir(path).to_owned(),
            deps,
            name: v.get("name").and_then(|n| n.as_str()).map(str::to_owned),
            module: v.get("type").and_then(|t| t.as_str()) == Some("module"),
        });
    }
    out
}

/// Path aliases of `tsconfig.json` / `jsconfig.json` (`compilerOptions.paths` keys, `*` cut).
fn aliases(ws: &Workspace<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["tsconfig.json", "jsconfig.json"] {
        for (_, text) in ws.named(name) {
            // tsconfig allows comments and trailing commas: read the keys of "paths" by hand
            let Some(at) = text.find("\"paths\"") else { continue };
            let rest = &text[at..];
            let Some(open) = rest.find('{') else { continue };
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            for key in rest[open..close].split('"').skip(1).step_by(2) {
                if key.contains('*') || !key.starts_with('.') {
                    let prefix = key.trim_end_matches('*');
                    if !prefix.is_empty() && !prefix.starts_with('.') {
                        out.push(prefix.to_owned());
                    }
                }
            }
        }
    }
    out
}

/// The package a bare specifier names (`@scope/name/sub` → `@scope/name`), None for relative,
/// absolute, protocol, alias-like and built-in specifiers.
fn package_of(spec: &str) -> Option<&str> {
    if spec.starts_with(['.', '/', '#', '~', '$', '!'])
        || spec.starts_with("@/")
        || spec.contains(':')
        || spec.contains('!')
    {
        return None;
    }
    let end = if spec.starts_with('@') {
        let first = spec.find('/')?;
        spec[first + 1..].find('/').map_or(spec.len(), |i| first + 1 + i)
    } else {
        spec.find('/').unwrap_or(spec.len())
    };
    let pkg = &spec[..end];
    let valid = pkg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '/'));
    (valid && !BUILTINS.split_whitespace().any(|b| b == pkg) && !pkg.is_empty()).then_some(pkg)
}

/// The text with `//` and `/* */` comments blanked (lengths kept, so offsets and lines stay).
fn without_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == q || c == b'\n' && q != b'`' {
                quote = None;
            }
            i += 1;
            continue;
        }
        match (c, b.get(i + 1)) {
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                for &x in &b[i..end] {
                    out.push(if x == b'\n' { b'\n' } else { b' ' });
                }
                i = end;
            }
            (b'\'' | b'"' | b'`', _) => {
                quote = Some(c);
                out.push(c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

pub(super) fn check(
    ws: &Workspace<'_>,
    _patterns: &PatternSet,
    checked: &mut Checked,
) -> Option<Vec<Missing>> {
    const EXTS: &[&str] = &[".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts", ".vue", ".svelte"];
    let sources: Vec<(&str, &str)> = ws.sources(EXTS).filter(|(p, _)| !p.ends_with(".d.ts")).collect();
    if sources.is_empty() {
        return None;
    }
    let manifests = manifests(ws);
    if manifests.is_empty() {
        checked.skipped.push("node: no package.json".to_owned());
        return None;
    }
    let aliases = aliases(ws);
    // a monorepo's packages may import each other by name, and the root's dependencies are hoisted
    let names: BTreeSet<&str> = manifests.iter().filter_map(|m| m.name.as_deref()).collect();
    let root = manifests
        .iter()
        .filter(|m| m.dir.is_empty())
        .flat_map(|m| m.deps.iter().map(String::as_str))
        .collect::<BTreeSet<&str>>();
    let mut out = Vec::new();
    for (path, text) in sources {
        // the nearest package.json above the file
        let Some(manifest) = manifests
            .iter()
            .filter(|m| m.dir.is_empty() || path.starts_with(&format!("{}/", m.dir)))
            .max_by_key(|m| m.dir.len())
        else {
            continue;
        };
        if super::aside(path, &manifest.dir) {
            continue;
        }
        checked.files += 1;
        let declared = |pkg: &str| {
            manifest.deps.contains(pkg)
                || root.contains(pkg)
                || names.contains(pkg)
                || manifest
                    .deps
                    .contains(&format!("@types/{}", pkg.trim_start_matches('@').replace('/', "__")))
                || ROWS.iter().any(|(p, brings)| {
                    (manifest.deps.contains(*p) || root.contains(p)) && brings.contains(&pkg)
                })
        };
        let code = without_comments(text);
        let mut line_starts: Vec<usize> = vec![0];
        line_starts.extend(code.match_indices('\n').map(|(i, _)| i + 1));
        let short: BTreeSet<usize> = lines(text).map(|(n, _)| n).collect();
        for caps in IMPORT.captures_iter(&code) {
            let Some(m) = caps.get(1).or_else(|| caps.get(2)) else { continue };
            let line = line_starts.partition_point(|&s| s <= m.start());
            if !short.contains(&line) {
                continue; // a minified line
            }
            checked.imports += 1;
            let spec = m.as_str();
            let Some(pkg) = package_of(spec) else { continue };
            if declared(pkg) || aliases.iter().any(|a| spec.starts_with(a.as_str())) {
                continue;
            }
            let ts = [".ts", ".tsx", ".mts", ".cts"].iter().any(|e| path.ends_with(e));
            let esm = path.ends_with(".mjs") || !path.ends_with(".cjs") && manifest.module;
            let (output, tool) = if ts {
                (
                    format!(
                        "{path}({line},1): error TS2307: Cannot find module '{spec}' or its corresponding type declarations.\n"
                    ),
                    "tsc",
                )
            } else if esm {
                (
                    format!(
                        "Error [ERR_MODULE_NOT_FOUND]: Cannot find package '{pkg}' imported from {path}\n    at packageResolve (node:internal/modules/esm/resolve:873:9) {{\n  code: 'ERR_MODULE_NOT_FOUND'\n}}\n"
                    ),
                    "node",
                )
            } else {
                (
                    format!(
                        "Error: Cannot find module '{spec}'\nRequire stack:\n- {path}\n    at Module._resolveFilename (node:internal/modules/cjs/loader:1207:15) {{\n  code: 'MODULE_NOT_FOUND',\n  requireStack: [ '{path}' ]\n}}\n"
                    ),
                    "node",
                )
            };
            let pj = if manifest.dir.is_empty() {
                "package.json".to_owned()
            } else {
                format!("{}/package.json", manifest.dir)
            };
            out.push(Missing {
                check: "node-import",
                file: path.to_owned(),
                line,
                name: pkg.to_owned(),
                reason: format!("imports '{spec}' but {pj} does not declare {pkg}"),
                output,
                tool,
                root: manifest.dir.clone(),
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_name_packages() {
        for (spec, want) in [
            ("lodash", Some("lodash")),
            ("lodash/fp", Some("lodash")),
            ("@aws-sdk/client-s3", Some("@aws-sdk/client-s3")),
            ("@scope/pkg/deep/file.js", Some("@scope/pkg")),
            ("./local", None),
            ("../up", None),
            ("node:fs", None),
            ("fs/promises", None),
            ("@/components/x", None),
            ("~/utils", None),
            ("#internal", None),
            ("virtual:pwa", None),
        ] {
            assert_eq!(package_of(spec), want, "{spec}");
        }
    }

    #[test]
    fn imports_of_every_form_are_found() {
        let src = "import x from 'a';\nimport { y,\n  z } from \"b/sub\";\nimport 'c';\nconst d = require('d');\n// require('commented')\n/* import e from 'e' */\nexport * from '@s/f';\nconst g = await import('g');\nimport type { T } from 'h';\nfoo.require('not')\n";
        let code = without_comments(src);
        let found: Vec<&str> = IMPORT
            .captures_iter(&code)
            .filter_map(|c| c.get(1).or_else(|| c.get(2)).map(|m| m.as_str()))
            .collect();
        assert_eq!(found, vec!["a", "b/sub", "c", "d", "@s/f", "g", "h"]);
    }
}
