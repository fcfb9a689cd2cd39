//! `POST /v1/check`'s promise: a predicted failure has the signature, category and key of the
//! failure a real run prints. Each case writes a small workspace with one dependency missing,
//! runs the real tool on it (CPython, Node.js, cargo, gcc), analyses what the tool printed, and
//! compares with the check's finding for the same workspace.

use std::path::Path;
use std::process::Command;

use helix_healer::analyze::{self, Diagnostic};
use helix_healer::check::{self, Environment};
use helix_healer::patterns::PatternSet;
use helix_healer::propose::WorkspaceFile;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn write(dir: &Path, files: &[(&str, &str)]) -> Vec<WorkspaceFile> {
    for (p, c) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, c).expect("write");
    }
    files.iter().map(|(p, c)| WorkspaceFile { path: (*p).to_owned(), content: (*c).to_owned() }).collect()
}

/// The primary diagnostic of what the tool printed.
fn real(dir: &Path, tool: &str, cmd: &[&str], set: &PatternSet) -> Diagnostic {
    let out = Command::new(cmd[0]).args(&cmd[1..]).current_dir(dir).output().expect("run the tool");
    assert!(!out.status.success(), "{cmd:?} was meant to fail");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let a =
        analyze::analyze(&analyze::Request { output: &text, tool: Some(tool), ..Default::default() }, set);
    let p = a.primary.unwrap_or_else(|| panic!("no primary diagnostic in {text}"));
    a.diagnostics[p].clone()
}

fn same(label: &str, predicted: &Diagnostic, real: &Diagnostic) {
    assert_eq!(
        (&predicted.signature, predicted.category, &predicted.key),
        (&real.signature, real.category, &real.key),
        "{label}: predicted {:?} / real {:?}",
        predicted.template,
        real.template
    );
    println!("{label}: {} {:?} key {:?}", &real.signature[..12], real.category, real.key);
}

fn predicted(files: &[WorkspaceFile], env: &Environment, set: &PatternSet, name: &str) -> Diagnostic {
    let report = check::check(files, &[], env, set);
    let f = report
        .findings
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no finding for {name}: {:#?}", report.findings));
    f.diagnostic.clone()
}

#[test]
fn python_node_rust_and_c_findings_match_real_failures() {
    let set = PatternSet::seed().expect("seed");
    let env = Environment::default();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut compared = 0;

    assert!(have("python3"), "python3 is needed (the CI machine has it)");
    let dir = tmp.path().join("py");
    let files = write(
        &dir,
        &[("requirements.txt", "requests\n"), ("app/main.py", "import os\nimport helix_absent_module.sub\n")],
    );
    let got = predicted(&files, &env, &set, "helix_absent_module");
    same("python", &got, &real(&dir, "python", &["python3", "app/main.py"], &set));
    compared += 1;

    if have("node") {
        let dir = tmp.path().join("js");
        let files = write(
            &dir,
            &[
                ("package.json", "{\"name\":\"app\",\"dependencies\":{}}"),
                ("index.js", "const x = require('helix-absent-pkg/sub/file');\n"),
                ("esm/package.json", "{\"name\":\"esm-app\",\"type\":\"module\"}"),
                ("esm/index.js", "import x from '@helix-absent/pkg';\n"),
            ],
        );
        same(
            "node cjs",
            &predicted(&files, &env, &set, "helix-absent-pkg"),
            &real(&dir, "node", &["node", "index.js"], &set),
        );
        same(
            "node esm",
            &predicted(&files, &env, &set, "@helix-absent/pkg"),
            &real(&dir, "node", &["node", "esm/index.js"], &set),
        );
        compared += 2;
    } else {
        eprintln!("node not installed: the Node.js case is skipped");
    }

    assert!(have("cargo"), "cargo builds this test");
    let dir = tmp.path().join("rs");
    let files = write(
        &dir,
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\n[workspace]\n",
            ),
            ("src/main.rs", "use helix_absent_crate::Thing;\nfn main() {}\n"),
        ],
    );
    let out = Command::new("cargo")
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .current_dir(&dir)
        .output()
        .expect("cargo");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let a = analyze::analyze(
        &analyze::Request { output: &text, tool: Some("cargo"), ..Default::default() },
        &set,
    );
    let real_rs = a.diagnostics[a.primary.expect("primary")].clone();
    same("rust use", &predicted(&files, &env, &set, "helix_absent_crate"), &real_rs);
    compared += 1;

    if have("gcc") {
        // a header of the map that this machine does not have
        let debian = set.map("debian").expect("debian map");
        let absent = debian.keys().find(|h| {
            !["/usr/include", "/usr/local/include", "/usr/include/x86_64-linux-gnu"]
                .iter()
                .any(|d| Path::new(d).join(h).exists())
        });
        match absent {
            Some(header) => {
                let dir = tmp.path().join("c");
                let src =
                    format!("#include <stdio.h>\n#include <{header}>\nint main(void) {{ return 0; }}\n");
                let files = write(
                    &dir,
                    &[("Dockerfile", "FROM debian\nRUN apt-get install -y make\n"), ("src/main.c", &src)],
                );
                same(
                    "c header",
                    &predicted(&files, &env, &set, header),
                    &real(&dir, "gcc", &["gcc", "-c", "src/main.c", "-o", "/dev/null"], &set),
                );
                compared += 1;
            }
            None => eprintln!("every mapped header is installed here: the C case is skipped"),
        }
    } else {
        eprintln!("gcc not installed: the C case is skipped");
    }
    println!("compared {compared} predicted failures with real ones");
}
