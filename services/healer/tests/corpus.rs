//! Quality on the error corpus (tests/fixtures/corpus): category accuracy, pairwise grouping
//! precision and recall of signatures, key accuracy. Prints the figures; fails below the floor.
//!
//! The floor is what the README promises. These are development cases: the healer is also
//! judged on unseen variants and tools, so no rule here may name a corpus string.

use helix_healer::analyze::{Request, analyze};
use helix_healer::patterns::PatternSet;

#[derive(serde::Deserialize)]
struct Case {
    id: String,
    tool: String,
    group: String,
    category: String,
    key: String,
    output: String,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/corpus/errors-dev.jsonl");
    std::fs::read_to_string(path)
        .expect("corpus fixture")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line"))
        .collect()
}

#[test]
fn corpus_quality_meets_the_floor() {
    let patterns = PatternSet::seed().expect("seed patterns");
    let cases = cases();
    let mut results = Vec::new();
    let (mut cat_ok, mut key_total, mut key_ok) = (0usize, 0usize, 0usize);
    let mut misses = Vec::new();
    for c in &cases {
        let a = analyze(&Request { output: &c.output, tool: None, ..Request::default() }, &patterns);
        let Some(p) = a.primary.map(|i| a.diagnostics[i].clone()) else {
            misses.push(format!("{} ({}): no diagnostic", c.id, c.group));
            results.push((String::new(), c));
            continue;
        };
        if p.category.as_str() == c.category {
            cat_ok += 1;
        } else {
            misses.push(format!(
                "{} ({}): category {} want {} [{}]",
                c.id,
                c.group,
                p.category.as_str(),
                c.category,
                p.message
            ));
        }
        if !c.key.is_empty() {
            key_total += 1;
            if p.key.as_deref() == Some(c.key.as_str()) {
                key_ok += 1;
            } else {
                misses.push(format!(
                    "{} ({}): key {:?} want {:?} [{}]",
                    c.id, c.group, p.key, c.key, p.template
                ));
            }
        }
        let _ = &c.tool;
        results.push((p.signature.clone(), c));
    }
    // pairwise grouping: "same signature" against "same group"
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for i in 0..results.len() {
        for j in i + 1..results.len() {
            let same_sig = !results[i].0.is_empty() && results[i].0 == results[j].0;
            let same_group = results[i].1.group == results[j].1.group;
            match (same_sig, same_group) {
                (true, true) => tp += 1,
                (true, false) => {
                    fp += 1;
                    misses.push(format!(
                        "merged: {} ({}) and {} ({})",
                        results[i].1.id, results[i].1.group, results[j].1.id, results[j].1.group
                    ));
                }
                (false, true) => {
                    fn_ += 1;
                    misses.push(format!(
                        "split: {} and {} ({})",
                        results[i].1.id, results[j].1.id, results[i].1.group
                    ));
                }
                _ => {}
            }
        }
    }
    let precision = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
    let recall = if tp + fn_ == 0 { 1.0 } else { tp as f64 / (tp + fn_) as f64 };
    let category = cat_ok as f64 / cases.len() as f64;
    let key = if key_total == 0 { 1.0 } else { key_ok as f64 / key_total as f64 };
    println!("corpus: {} cases", cases.len());
    println!("category accuracy: {category:.3} ({cat_ok}/{})", cases.len());
    println!("grouping precision: {precision:.3}, recall: {recall:.3} (pairs: {tp} tp, {fp} fp, {fn_} fn)");
    println!("key accuracy: {key:.3} ({key_ok}/{key_total})");
    for m in &misses {
        println!("  miss: {m}");
    }
    assert!(category >= 0.95, "category accuracy {category:.3} < 0.95");
    assert!(precision >= 0.95 && recall >= 0.95, "grouping {precision:.3}/{recall:.3} < 0.95");
    assert!(key >= 0.90, "key accuracy {key:.3} < 0.90");
}
