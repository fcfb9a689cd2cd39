//! Joining an analysis with what the healer knows: the fixes that worked for a signature, and
//! patterns and signatures similar to a diagnostic no pattern matched.

use crate::analyze::{Analysis, PatternMatch, fill};
use crate::index::{HitKind, KnowledgeIndex};
use crate::patterns::PatternSet;
use crate::store::{FixScope, LearningStore};

/// At most this many matches per diagnostic.
const MAX_MATCHES: usize = 8;
const MAX_SIMILAR: usize = 5;
const MAX_FIXES: usize = 3;

/// Maps a BM25 score into (0, 1), below an exact match's 1.0.
fn similarity(score: f32) -> f32 {
    (0.95 * score / (score + 5.0) * 1000.0).round() / 1000.0
}

/// Adds to each diagnostic's matches: its own repair history first ("fix"), then its exact
/// pattern matches, then, when no pattern matched exactly, similar patterns ("similar_pattern")
/// and fixes of similar signatures ("similar_fix").
/// Past fixes come only from the projects `scope` admits (see [`FixScope`]).
pub fn enrich(
    analysis: &mut Analysis,
    store: &dyn LearningStore,
    index: &KnowledgeIndex,
    patterns: &PatternSet,
    scope: &FixScope,
) {
    for d in &mut analysis.diagnostics {
        let mut fixes = Vec::new();
        if store.status(&d.signature).solved
            && let Some(report) = store.report(&d.signature, scope)
        {
            for f in report.fixes.iter().filter(|f| f.successes > 0).take(MAX_FIXES) {
                fixes.push(PatternMatch {
                    kind: "fix".to_owned(),
                    id: d.signature.clone(),
                    title: format!("solved {}x like this", f.successes),
                    score: 1.0,
                    explanation: f.description.clone(),
                    fixes: vec![f.description.clone()],
                    source: None,
                });
            }
        }
        let mut similar = Vec::new();
        // similar-error search is for errors no pattern explains
        if !d.matches.iter().any(|m| m.kind == "pattern") {
            let hits = index.similar(&d.template, &d.tool, d.category, MAX_SIMILAR + 2).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "similar-error search failed");
                Vec::new()
            });
            for hit in hits {
                match hit.kind {
                    HitKind::Pattern => {
                        if d.matches.iter().any(|m| m.id == hit.id) {
                            continue;
                        }
                        let Some(p) = patterns.get(&hit.id) else { continue };
                        similar.push(PatternMatch {
                            kind: "similar_pattern".to_owned(),
                            id: p.id.clone(),
                            title: p.title.clone(),
                            score: similarity(hit.score),
                            explanation: fill(&p.explanation, &d.params, p),
                            fixes: p.fixes.iter().map(|f| fill(f, &d.params, p)).collect(),
                            source: None,
                        });
                    }
                    HitKind::Signature if hit.id != d.signature => {
                        if !store.status(&hit.id).solved {
                            continue;
                        }
                        let Some(report) = store.report(&hit.id, scope) else { continue };
                        let Some(best) = report.fixes.iter().find(|f| f.successes > 0) else { continue };
                        similar.push(PatternMatch {
                            kind: "similar_fix".to_owned(),
                            id: hit.id.clone(),
                            title: format!("solved {}x for a similar error: {}", best.successes, hit.title),
                            score: similarity(hit.score),
                            explanation: best.description.clone(),
                            fixes: vec![best.description.clone()],
                            source: None,
                        });
                    }
                    HitKind::Signature => {}
                }
            }
        }
        let mut all = fixes;
        all.append(&mut d.matches);
        all.extend(similar);
        all.truncate(MAX_MATCHES);
        d.matches = all;
    }
}
