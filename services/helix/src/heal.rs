//! `helix heal`, `helix check`, `helix patterns` and `helix mine`: the healer on the command line, in-process
//! (no server needed), with the same code the service runs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use helix_healer::analyze::{Analysis, Diagnostic, Request, analyze};
use helix_healer::patterns::PatternSet;

/// The pattern base: a directory when given, else the seed compiled in.
pub fn patterns(dir: Option<&Path>) -> anyhow::Result<PatternSet> {
    Ok(match dir {
        Some(d) => PatternSet::load_dir(d)?,
        None => PatternSet::seed()?,
    })
}

/// Reads FILE, or standard input for `-`, decoding invalid UTF-8 lossily.
pub fn read_input(file: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs a command without a shell, passing its output through, and returns (output, exit code).
/// stdout and stderr are both captured; stderr follows stdout in the captured text.
pub fn run_command(argv: &[String]) -> anyhow::Result<(String, i32)> {
    let (program, args) = argv.split_first().context("no command given after --")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    // pass output through as it comes, from two threads so neither pipe can fill up and block
    let t_out = std::thread::spawn(move || tee(&mut out, &mut std::io::stdout()));
    let t_err = std::thread::spawn(move || tee(&mut err, &mut std::io::stderr()));
    let status = child.wait().context("cannot wait for the command")?;
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    let mut text = String::from_utf8_lossy(&stdout).into_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&String::from_utf8_lossy(&stderr));
    Ok((text, status.code().unwrap_or(128)))
}

fn tee(from: &mut impl Read, to: &mut impl Write) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        let _ = to.write_all(&buf[..n]);
        let _ = to.flush();
    }
    all
}

/// Analyses `output` and prints a report (or JSON). Exit code: 0 when nothing was found, 1
/// when diagnostics were found.
pub fn heal(
    output: &str,
    tool: Option<&str>,
    exit_code: Option<i32>,
    json: bool,
    patterns: &PatternSet,
) -> anyhow::Result<ExitCode> {
    let analysis = analyze(&Request { output, tool, command: None, exit_code }, patterns);
    if json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        print!("{}", report(&analysis));
    }
    Ok(if analysis.diagnostics.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Checks the workspace at `dir` and prints the findings (or JSON). Exit code: 0 when nothing
/// was found, 1 when a run would fail.
pub fn check(dir: &Path, json: bool, fresh_machine: bool, patterns: &PatternSet) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let (files, listing) = helix_core::client::check::collect_workspace(
        dir,
        helix_core::client::check::WorkspaceLimits::default(),
    );
    let files: Vec<helix_healer::propose::WorkspaceFile> = files
        .into_iter()
        .map(|f| helix_healer::propose::WorkspaceFile { path: f.path, content: f.content })
        .collect();
    let installed = if fresh_machine { None } else { helix_core::client::check::installed_debian_packages() };
    let env = helix_healer::check::Environment { installed_packages: installed };
    let report = helix_healer::check::check(&files, &listing, &env, patterns);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", check_report(&report));
    }
    Ok(if report.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The human report of a check: each finding with the failure it predicts and its fixes.
pub fn check_report(r: &helix_healer::check::CheckReport) -> String {
    let mut out = String::new();
    for f in &r.findings {
        let d = &f.diagnostic;
        let more =
            if f.other_uses > 0 { format!(" (and {} more uses)", f.other_uses) } else { String::new() };
        out.push_str(&format!(
            "{}:{}: {}{more}
",
            f.file, f.line, f.reason
        ));
        out.push_str(&format!(
            "  would fail: {} [{}, signature {}]\n",
            d.message,
            d.category.as_str(),
            &d.signature[..16.min(d.signature.len())]
        ));
        for fix in &f.fixes {
            let confidence = serde_json::to_value(fix.confidence)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            out.push_str(&format!("  fix ({confidence}): {}\n", fix.description));
            if let Some(p) = &fix.patch {
                for l in p.lines() {
                    out.push_str(&format!("    {l}\n"));
                }
            }
        }
    }
    let c = &r.checked;
    let found = match r.findings.len() {
        0 => "no predicted failures".to_owned(),
        1 => "1 predicted failure".to_owned(),
        n => format!("{n} predicted failures"),
    };
    let ecosystems =
        if c.ecosystems.is_empty() { "nothing to check".to_owned() } else { c.ecosystems.join(", ") };
    out.push_str(&format!("{found}: {} files, {} imports checked ({ecosystems})\n", c.files, c.imports));
    for s in &c.skipped {
        out.push_str(&format!("  skipped {s}\n"));
    }
    out
}

/// The human report: the root cause in full, the rest one line each.
pub fn report(a: &Analysis) -> String {
    let Some(primary) = a.primary else { return "no errors found\n".to_owned() };
    let mut out = String::new();
    let d = &a.diagnostics[primary];
    out.push_str(&format!("root cause: {}\n", d.message));
    detail(&mut out, d);
    let others: Vec<&Diagnostic> =
        a.diagnostics.iter().enumerate().filter(|(i, _)| *i != primary).map(|(_, d)| d).collect();
    if !others.is_empty() {
        out.push_str(&format!("\nalso found ({}):\n", others.len()));
        for o in others {
            let at = o.location.as_ref().map(|l| format!(" ({})", loc(l))).unwrap_or_default();
            out.push_str(&format!("  - [{}] {}{at}\n", o.category.as_str(), o.message));
        }
    }
    out
}

fn loc(l: &helix_healer::model::Location) -> String {
    match (l.line, l.column) {
        (Some(line), Some(col)) => format!("{}:{line}:{col}", l.file),
        (Some(line), None) => format!("{}:{line}", l.file),
        _ => l.file.clone(),
    }
}

fn detail(out: &mut String, d: &Diagnostic) {
    if let Some(l) = &d.location {
        out.push_str(&format!("  at        {}\n", loc(l)));
    }
    let class = serde_json::to_value(d.failure_class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    out.push_str(&format!("  category  {} ({class})\n", d.category.as_str()));
    out.push_str(&format!("  tool      {}\n", d.tool));
    if let Some(k) = &d.key {
        out.push_str(&format!("  key       {k}\n"));
    }
    out.push_str(&format!(
        "  signature {} ({})\n",
        &d.signature[..16.min(d.signature.len())],
        d.signature_version
    ));
    out.push_str(&format!("  template  {}\n", d.template));
    for m in d.matches.iter().take(3) {
        out.push_str(&format!("\n  {} [{} {:.2}] {}\n", m.id, m.kind, m.score, m.title));
        out.push_str(&format!("    {}\n", m.explanation));
        for f in &m.fixes {
            out.push_str(&format!("    - {f}\n"));
        }
    }
}

/// `helix patterns lint`: validates a pattern directory.
pub fn lint(dir: &Path) -> anyhow::Result<ExitCode> {
    match PatternSet::load_dir(dir) {
        Ok(set) => {
            let ecosystems: std::collections::BTreeSet<&str> =
                set.iter().map(|p| p.ecosystem.as_str()).collect();
            println!("{}: {} patterns, {} ecosystems, all valid", dir.display(), set.len(), ecosystems.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `helix patterns search`: full-text search in a throwaway index.
pub fn search(query: &str, limit: usize, patterns: &PatternSet) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let index = helix_healer::index::KnowledgeIndex::open(&dir.path().join("index"), patterns)?;
    let hits = index.search_patterns(query, limit)?;
    if hits.is_empty() {
        println!("no pattern matches {query:?}");
    }
    for h in hits {
        if let Some(p) = patterns.get(&h.id) {
            println!("{:<36} {:>6.2}  [{}] {}", p.id, h.score, p.category.as_str(), p.title);
        }
    }
    Ok(ExitCode::SUCCESS)
}
/// `helix mine`: one message per line in; per line `template id<TAB>template` out, in input order.
pub fn mine(text: &str) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (id, template) in helix_healer::mining::mine(text.lines()) {
        writeln!(stdout, "{id}\t{template}").context("cannot write")?;
    }
    stdout.flush().context("cannot write")?;
    Ok(ExitCode::SUCCESS)
}
