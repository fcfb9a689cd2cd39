//! Quality on tools without a dedicated parser (issue 16): the second corpus,
//! `tests/fixtures/corpus-unseen/cases.jsonl`, real outputs of 37 tools (make, perl, maven, erlang,
//! tcl, psql, mariadb, sqlite3, redis-cli, git, curl, ssh, docker, pip, tar, unzip, openssl, gpg,
//! qemu-img, rsync, jq, awk, sed, dpkg, as, gzip, pkg-config, chmod, cp, timeout, env, iconv, base64, mosquitto_pub, wget, pg_dump, rabbitmqctl) made by `tests/corpus-unseen/generate.py`. Whole tools
//! are held out of tuning (`split: heldout`); the figures are printed for each split and for all.
//!
//! Targets (issue 16): category >= 0.95, key >= 0.90, grouping recall >= 0.95, precision >= 0.99.
//! The dev split meets them but for recall; the held-out split does not yet. The assertions are
//! floors at what the healer reaches today, so a change that loses ground fails, and grouping
//! precision (over-merging different causes, the worst failure) is held at 0.99 on both. Raise
//! the floors as the tool-agnostic layer improves.

use helix_healer::analyze::{Request, analyze};
use helix_healer::model::DiagnosticConfidence;
use helix_healer::patterns::PatternSet;

#[derive(serde::Deserialize)]
struct Case {
    id: String,
    group: String,
    category: String,
    key: String,
    split: String,
    command: String,
    exit_code: i32,
    output: String,
}

#[derive(Default)]
struct Figures {
    cases: usize,
    category_ok: usize,
    keys: usize,
    key_ok: usize,
    tp: usize,
    fp: usize,
    fn_: usize,
    /// confident (high) and wrong: the failure that matters most
    confident_wrong: usize,
}

impl Figures {
    fn category(&self) -> f64 {
        self.category_ok as f64 / self.cases.max(1) as f64
    }
    fn key(&self) -> f64 {
        if self.keys == 0 { 1.0 } else { self.key_ok as f64 / self.keys as f64 }
    }
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fp) as f64 }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fn_) as f64 }
    }
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/corpus-unseen/cases.jsonl");
    std::fs::read_to_string(path)
        .expect("corpus fixture")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line"))
        .collect()
}

fn measure(cases: &[&Case], patterns: &PatternSet, misses: &mut Vec<String>) -> Figures {
    let mut f = Figures { cases: cases.len(), ..Figures::default() };
    let mut sigs = Vec::new();
    let mut templates = Vec::new();
    for c in cases {
        // as the orchestrator sends it: the output, the command and its exit code, no tool hint
        let a = analyze(
            &Request {
                output: &c.output,
                command: Some(&c.command),
                exit_code: Some(c.exit_code),
                tool: None,
            },
            patterns,
        );
        let Some(p) = a.primary.map(|i| a.diagnostics[i].clone()) else {
            misses.push(format!("{} ({}): no diagnostic", c.id, c.group));
            sigs.push(String::new());
            templates.push(String::new());
            continue;
        };
        if p.category.as_str() == c.category {
            f.category_ok += 1;
        } else {
            if p.confidence == DiagnosticConfidence::High {
                f.confident_wrong += 1;
            }
            misses.push(format!(
                "{} ({}): category {} want {} [{:?}] {}",
                c.id,
                c.group,
                p.category.as_str(),
                c.category,
                p.confidence,
                p.message
            ));
        }
        if !c.key.is_empty() {
            f.keys += 1;
            if p.key.as_deref() == Some(c.key.as_str()) {
                f.key_ok += 1;
            } else {
                misses.push(format!(
                    "{} ({}): key {:?} want {:?} [{}]",
                    c.id, c.group, p.key, c.key, p.template
                ));
            }
        }
        sigs.push(p.signature.clone());
        templates.push(p.template.clone());
    }
    for i in 0..cases.len() {
        for j in i + 1..cases.len() {
            let same_sig = !sigs[i].is_empty() && sigs[i] == sigs[j];
            match (same_sig, cases[i].group == cases[j].group) {
                (true, true) => f.tp += 1,
                (true, false) => {
                    f.fp += 1;
                    misses.push(format!(
                        "merged: {} ({}) and {} ({})",
                        cases[i].id, cases[i].group, cases[j].id, cases[j].group
                    ));
                }
                (false, true) => {
                    f.fn_ += 1;
                    misses.push(format!(
                        "split: {} and {} ({}): {:?} / {:?}",
                        cases[i].id, cases[j].id, cases[i].group, templates[i], templates[j]
                    ));
                }
                _ => {}
            }
        }
    }
    f
}

#[test]
fn unseen_tools_quality_is_printed_and_holds_its_floor() {
    let patterns = PatternSet::seed().expect("seed patterns");
    let all = cases();
    assert!(all.len() >= 60, "{} cases", all.len());
    let report = |name: &str, cases: Vec<&Case>| {
        let mut misses = Vec::new();
        let f = measure(&cases, &patterns, &mut misses);
        let tools: std::collections::BTreeSet<&str> =
            cases.iter().map(|c| c.command.split(' ').next().unwrap_or("")).collect();
        println!(
            "{name:<8} {:>3} cases, {:>2} commands: category {:.3}, key {:.3} ({}/{}), grouping precision {:.3} recall {:.3} (pairs {} tp {} fp {} fn), confidently wrong {}",
            f.cases,
            tools.len(),
            f.category(),
            f.key(),
            f.key_ok,
            f.keys,
            f.precision(),
            f.recall(),
            f.tp,
            f.fp,
            f.fn_,
            f.confident_wrong
        );
        if name == "dev" {
            for m in &misses {
                println!("  miss: {m}");
            }
        }
        f
    };
    let dev = report("dev", all.iter().filter(|c| c.split == "dev").collect());
    let heldout = report("heldout", all.iter().filter(|c| c.split == "heldout").collect());
    let whole = report("all", all.iter().collect());
    // floors: today's figures less a small margin (see the module doc)
    // (dev 2026-12-06, 28 tools: 1.000 / 1.000 / 0.952 / 1.000; held out: 0.800 / 0.429 / 0.500 / 1.000)
    // (dev 2026-12-07, 54 tools: 1.000 / 1.000 / 0.961 / 1.000; held out: 0.800 / 0.571 / 0.500 / 1.000)
    for (name, f, floor) in
        [("dev", &dev, [0.95, 0.95, 0.95, 0.99]), ("heldout", &heldout, [0.75, 0.55, 0.45, 0.99])]
    {
        assert!(f.category() >= floor[0], "{name}: category {:.3} < {}", f.category(), floor[0]);
        assert!(f.key() >= floor[1], "{name}: key {:.3} < {}", f.key(), floor[1]);
        assert!(f.recall() >= floor[2], "{name}: recall {:.3} < {}", f.recall(), floor[2]);
        assert!(f.precision() >= floor[3], "{name}: precision {:.3} < {}", f.precision(), floor[3]);
    }
    let _ = whole;
}
