use super::*;

fn set() -> PatternSet {
    PatternSet::seed().expect("seed")
}

fn ws(files: &[(&str, &str)]) -> Vec<WorkspaceFile> {
    files.iter().map(|(p, c)| WorkspaceFile { path: (*p).to_owned(), content: (*c).to_owned() }).collect()
}

fn run(files: &[(&str, &str)], env: &Environment) -> CheckReport {
    let files = ws(files);
    check(&files, &[], env, &set())
}

#[test]
fn a_python_import_without_its_distribution_is_a_finding_with_the_fix() {
    let files = [
        ("requirements.txt", "flask==3.0\n"),
        ("app/main.py", "import os\nimport yaml\nfrom flask import Flask\nfrom app import util\n"),
        ("app/util.py", "import json\n"),
    ];
    let report = run(&files, &Environment::default());
    assert_eq!(report.findings.len(), 1, "{report:#?}");
    let f = &report.findings[0];
    assert_eq!(
        (f.check.as_str(), f.file.as_str(), f.line, f.name.as_str()),
        ("python-import", "app/main.py", 2, "yaml")
    );
    assert_eq!(f.diagnostic.category, crate::model::Category::MissingDependency);
    assert_eq!(f.diagnostic.key.as_deref(), Some("yaml"));
    assert!(
        f.diagnostic.matches.iter().any(|m| m.id == "python.module-not-found"),
        "{:?}",
        f.diagnostic.matches
    );
    let fix = f.fixes.first().expect("a fix");
    assert_eq!(fix.confidence, propose::Confidence::Auto);
    assert!(fix.patch.as_deref().unwrap_or("").contains("+PyYAML"), "{fix:?}");
    assert_eq!(report.checked.ecosystems, vec!["python"]);
    assert_eq!(report.checked.files, 2);
}

#[test]
fn the_finding_has_the_signature_of_the_real_failure() {
    // what CPython prints for the same import, from another directory and line
    let real = "Traceback (most recent call last):\n  File \"/home/u/proj/app/main.py\", line 7, in <module>\n    import yaml\nModuleNotFoundError: No module named 'yaml'\n";
    let a = analyze::analyze(&analyze::Request { output: real, tool: None, ..Default::default() }, &set());
    let want = &a.diagnostics[a.primary.expect("primary")].signature;
    let report = run(&[("requirements.txt", ""), ("main.py", "import yaml\n")], &Environment::default());
    assert_eq!(&report.findings[0].diagnostic.signature, want);
}

#[test]
fn an_intact_workspace_has_no_findings() {
    let files = [
        (
            "pyproject.toml",
            "[project]\nname = \"svc\"\ndependencies = [\"requests>=2\", \"PyYAML\", \"python-dateutil\"]\n[project.optional-dependencies]\ntest = [\"pytest\", \"hypothesis\"]\n",
        ),
        (
            "src/svc/__init__.py",
            "import requests, urllib3\nimport yaml\nfrom dateutil import parser\nfrom svc import core\ntry:\n    import orjson\nexcept ImportError:\n    orjson = None\n",
        ),
        ("src/svc/core.py", "from __future__ import annotations\nimport typing\n"),
        (
            "tests/test_core.py",
            "import pytest\nfrom hypothesis import given\nimport svc\nfrom . import helpers\n",
        ),
        (
            "package.json",
            "{\"name\":\"web\",\"type\":\"module\",\"dependencies\":{\"express\":\"^4\"},\"devDependencies\":{\"@types/node\":\"*\",\"vitest\":\"*\"}}",
        ),
        (
            "web/server.js",
            "import express from 'express';\nimport fs from 'node:fs';\nimport path from 'path';\nimport { helper } from './helper.js';\nimport debug from 'debug';\n",
        ),
        ("web/server.test.ts", "import { test } from 'vitest';\nimport type { Server } from 'http';\n"),
        (
            "Cargo.toml",
            "[package]\nname = \"my-tool\"\n[dependencies]\nserde-json = { package = \"serde_json\", version = \"1\" }\nanyhow = \"1\"\n[dev-dependencies]\ntempfile = \"3\"\n",
        ),
        (
            "src/main.rs",
            "mod config;\nuse std::io;\nuse serde_json::Value;\nuse anyhow::Result;\nuse config::Settings;\nuse my_tool::run;\n#[cfg(test)]\nmod tests { use tempfile::tempdir; }\n",
        ),
        ("src/config.rs", "pub struct Settings;\n"),
        (
            "Dockerfile",
            "FROM debian\nRUN apt-get update && apt-get install -y --no-install-recommends \\\n    libcurl4-openssl-dev zlib1g-dev\n",
        ),
        (
            "native/net.c",
            "#include <stdio.h>\n#include <curl/curl.h>\n#include <zlib.h>\n#include \"net.h\"\n#ifdef WITH_SSL\n#include <openssl/ssl.h>\n#endif\n",
        ),
        ("native/net.h", "#ifndef NET_H\n#define NET_H\n#include <stddef.h>\n#endif\n"),
    ];
    let report = run(&files, &Environment::default());
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!(report.checked.ecosystems, vec!["python", "node", "rust", "c"]);
}

#[test]
fn each_ecosystem_reports_what_is_missing() {
    let files = [
        ("package.json", "{\"name\":\"web\",\"dependencies\":{\"express\":\"^4\"}}"),
        ("index.js", "const express = require('express');\nconst _ = require('lodash/fp');\n"),
        ("src/app.ts", "import { S3Client } from '@aws-sdk/client-s3';\n"),
        ("Cargo.toml", "[package]\nname = \"x\"\n[dependencies]\nserde = \"1\"\n"),
        ("src/lib.rs", "use serde::Serialize;\nuse regex::Regex;\nextern crate libc;\n"),
        ("main.c", "#include <curl/curl.h>\n"),
    ];
    let env = Environment { installed_packages: Some(vec!["libc6-dev".to_owned()]) };
    let report = run(&files, &env);
    let got: Vec<(&str, &str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.check.as_str(), f.name.as_str(), f.diagnostic.key.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        got,
        vec![
            ("node-import", "lodash", "lodash"),
            ("c-header", "curl/curl.h", "curl/curl.h"),
            ("node-import", "@aws-sdk/client-s3", "@aws-sdk/client-s3"),
            ("rust-crate", "regex", "regex"),
            ("rust-crate", "libc", "libc"),
        ],
        "{:#?}",
        report.findings
    );
    for f in &report.findings {
        assert_eq!(f.diagnostic.category, crate::model::Category::MissingDependency, "{f:#?}");
        assert!(!f.fixes.is_empty(), "{f:#?}");
    }
    // installed, the header is no finding
    let env = Environment { installed_packages: Some(vec!["libcurl4-openssl-dev:amd64".to_owned()]) };
    assert!(run(&files, &env).findings.iter().all(|f| f.check != "c-header"));
    // nothing known about the machine: C is skipped, not guessed
    let report = run(&files, &Environment::default());
    assert!(report.findings.iter().all(|f| f.check != "c-header"));
    assert!(report.checked.skipped.iter().any(|s| s.starts_with("c:")), "{:?}", report.checked.skipped);
}

#[test]
fn no_manifest_means_no_guess() {
    let report =
        run(&[("script.py", "import numpy\n"), ("a.js", "require('left-pad')\n")], &Environment::default());
    assert!(report.findings.is_empty());
    assert_eq!(report.checked.skipped.len(), 2, "{:?}", report.checked.skipped);
}

#[test]
fn hostile_sources_cost_linear_time_and_no_findings_beyond_the_cap() {
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("import missing_module_{i}\n"));
    }
    text.push_str(&"x".repeat(1 << 20));
    text.push('\n');
    text.push_str(&"import(\"".repeat(100_000));
    let report = run(
        &[("requirements.txt", ""), ("a.py", &text), ("package.json", "{}"), ("b.js", &text)],
        &Environment::default(),
    );
    assert_eq!(report.findings.len(), MAX_FINDINGS);
}

#[test]
fn a_sub_project_is_fixed_in_its_own_manifest() {
    let files = [
        ("README.md", "monorepo\n"),
        ("services/api/requirements.txt", "flask\n"),
        ("services/api/app.py", "import flask\nimport yaml\n"),
        ("tools/script.py", "import numpy\n"),
    ];
    let report = run(&files, &Environment::default());
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let fix = &report.findings[0].fixes[0];
    assert_eq!(fix.files, vec!["services/api/requirements.txt".to_owned()]);
    let patch = fix.patch.as_deref().expect("patch");
    assert!(
        patch.starts_with("--- a/services/api/requirements.txt\n+++ b/services/api/requirements.txt\n"),
        "{patch}"
    );
    assert!(patch.contains("+PyYAML\n"), "{patch}");
    // tools/ has no manifest: not guessed
    assert!(
        report.checked.skipped.iter().any(|s| s.contains("1 files under no dependency manifest")),
        "{:?}",
        report.checked.skipped
    );
}

#[test]
fn examples_and_lazy_imports_are_not_a_run_s_requirements() {
    let files = [
        ("requirements.txt", "flask\n"),
        ("app.py", "import flask\ndef export():\n    import pandas\n"),
        ("examples/plot.py", "import matplotlib\n"),
        ("examples/own/requirements.txt", "flask\n"),
        ("examples/own/app.py", "import yaml\n"),
        ("tests/fixtures/data.py", "import numpy\n"),
        ("package.json", "{\"name\":\"x\",\"dependencies\":{}}"),
        ("examples/online/index.js", "require('redis')\n"),
    ];
    let report = run(&files, &Environment::default());
    let names: Vec<&str> = report.findings.iter().map(|f| f.name.as_str()).collect();
    // the example with a manifest of its own is checked against it
    assert_eq!(names, vec!["yaml"], "{:#?}", report.findings);
    assert!(aside("examples/plot.py", ""));
    assert!(!aside("examples/own/app.py", "examples/own"));
    assert!(aside("examples2x/../examples/a.py", "examples2x"));
    assert!(!aside("src/app.py", ""));
}
