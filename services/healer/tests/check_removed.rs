//! The static preflight measured as the issue asks: projects shaped like real ones
//! (`tests/fixtures/check-projects`), each checked intact (every finding is a false alarm) and
//! with one declared dependency removed at a time (caught when the check names what the
//! dependency provided). Prints the figures; the floors are the targets: ≥ 0.9 caught, 0 false
//! alarms.

use std::path::{Path, PathBuf};

use helix_healer::check::{self, Environment};
use helix_healer::patterns::PatternSet;
use helix_healer::propose::WorkspaceFile;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/check-projects")
}

fn files(dir: &Path) -> Vec<WorkspaceFile> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under").to_string_lossy().replace('\\', "/");
                out.push(WorkspaceFile { path: rel, content: std::fs::read_to_string(&p).expect("read") });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[test]
fn removed_dependencies_are_caught_and_intact_projects_raise_no_alarm() {
    let set = PatternSet::seed().expect("seed");
    let env = Environment::default();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("cases.json")).expect("cases"))
            .expect("json");
    let (mut total, mut caught, mut alarms, mut intact_alarms) = (0usize, 0usize, 0usize, 0usize);
    let mut missed = Vec::new();
    for (project, list) in cases.as_object().expect("object") {
        let intact = files(&root().join(project));
        let report = check::check(&intact, &[], &env, &set);
        intact_alarms += report.findings.len();
        for f in &report.findings {
            eprintln!("false alarm in intact {project}: {}:{} {}", f.file, f.line, f.reason);
        }
        assert!(
            !report.checked.ecosystems.is_empty(),
            "{project}: nothing checked: {:?}",
            report.checked.skipped
        );
        for case in list.as_array().expect("cases") {
            let (file, remove, name) = (
                case["file"].as_str().expect("file"),
                case["remove"].as_str().expect("remove"),
                case["name"].as_str().expect("name"),
            );
            let mut ws = intact.clone();
            let f = ws.iter_mut().find(|f| f.path == file).expect("the case's file");
            assert!(f.content.contains(remove), "{project}/{file} has no {remove:?}");
            f.content = f.content.replacen(remove, "", 1);
            if file.ends_with(".json") {
                // the last entry removed leaves a trailing comma
                f.content = f.content.replace(",\n  }", "\n  }");
            }
            let report = check::check(&ws, &[], &env, &set);
            total += 1;
            if report.findings.iter().any(|x| x.name == name) {
                caught += 1;
            } else {
                missed.push(format!("{project}: {name}"));
            }
            // anything else reported is a false alarm too
            for x in report.findings.iter().filter(|x| x.name != name) {
                alarms += 1;
                eprintln!("false alarm in {project} without {name}: {}:{} {}", x.file, x.line, x.reason);
            }
        }
    }
    let share = caught as f64 / total.max(1) as f64;
    println!(
        "check: {caught}/{total} removed dependencies caught ({share:.3}); false alarms: {intact_alarms} on intact projects, {alarms} beside the removed ones; missed: {missed:?}"
    );
    assert!(share >= 0.9, "caught {share:.3} < 0.9: missed {missed:?}");
    assert_eq!((intact_alarms, alarms), (0, 0), "false alarms");
}
