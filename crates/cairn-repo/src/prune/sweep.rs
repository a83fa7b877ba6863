//! The sweep: deal with marked packs — revive the ones a snapshot needs, delete the ones
//! whose every mark is past its grace period — then delete the marks that are due.
//!
//! For each pack listed in a readable mark, no index file names, and still in storage:
//!
//! - it holds a used blob that no indexed pack (nor a pack revived just before) holds:
//!   **revive** it (write an index file naming it), due or not, so the snapshot that needs
//!   it is whole again without waiting;
//! - else, if every mark listing it is due: **delete** it;
//! - else it waits for its youngest mark.
//!
//! Marked packs some index file names again (their backup wrote its index file after they
//! were marked as unindexed, or an earlier sweep revived them) are left alone: they are live.
//!
//! Order: revival index file → pack deletions → due marks. A crash in between leaves
//! revived packs also listed in a mark (left alone next time) or marks listing packs that
//! are gone (skipped next time).

use std::collections::HashSet;

use super::survey::Survey;
use super::{write_index_files, PruneError, PruneOptions, PruneReport};
use crate::id::Id;
use crate::index::IndexedPack;
use crate::pack::pack_key;
use crate::repo::Repository;

/// What the sweep will do.
#[derive(Debug, Default)]
struct Plan {
    /// Keys of marks past their grace period.
    due_marks: Vec<String>,
    revive: Vec<(IndexedPack, u64)>,
    delete: Vec<(Id, u64)>,
}

/// Sweep, updating the survey to what is left.
pub(super) fn run(
    repo: &Repository,
    survey: &mut Survey,
    options: &PruneOptions,
    report: &mut PruneReport,
) -> Result<(), PruneError> {
    let plan = plan(survey, options);
    let dry_run = options.dry_run;
    let revived: Vec<IndexedPack> = plan.revive.iter().map(|(p, _)| p.clone()).collect();
    if !revived.is_empty() {
        let files = write_index_files(repo, revived, dry_run)?;
        report.index_files_written += files.len();
        survey.index_files.extend(files);
    }
    for (_, size) in &plan.revive {
        report.revived.add(*size);
    }
    for (id, size) in &plan.delete {
        if !dry_run {
            repo.storage().delete(&pack_key(id))?;
        }
        survey.stored.remove(id);
        report.deleted.add(*size);
    }
    for key in &plan.due_marks {
        if !dry_run {
            repo.storage().delete(key)?;
        }
    }
    report.marks_deleted = plan.due_marks.len();
    survey.marks.retain(|(key, _)| !plan.due_marks.contains(key));
    Ok(())
}

fn plan(survey: &Survey, options: &PruneOptions) -> Plan {
    let live = survey.live_packs();
    // Blobs readable through the index once the sweep is done; grows with each revival.
    let mut available: HashSet<Id> = live
        .values()
        .filter(|p| survey.stored.contains_key(&p.id))
        .flat_map(|p| p.entries.iter().map(|e| e.id))
        .collect();
    let is_due = |mark: &super::Mark| mark.due(options.grace) <= survey.now;
    let waiting: HashSet<Id> =
        survey.marks.iter().filter(|(_, m)| !is_due(m)).flat_map(|(_, m)| m.packs.iter().map(|p| p.pack.id)).collect();

    let mut plan = Plan {
        due_marks: survey.marks.iter().filter(|(_, m)| is_due(m)).map(|(k, _)| k.clone()).collect(),
        ..Plan::default()
    };
    let mut seen = HashSet::new();
    let mut candidates: Vec<&IndexedPack> = survey
        .marks
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| &p.pack))
        .filter(|p| seen.insert(p.id) && !live.contains_key(&p.id))
        .collect();
    candidates.sort_by_key(|p| p.id);
    for pack in candidates {
        let Some(&size) = survey.stored.get(&pack.id) else { continue };
        if pack.entries.iter().any(|e| survey.used.contains(&e.id) && !available.contains(&e.id)) {
            available.extend(pack.entries.iter().map(|e| e.id));
            plan.revive.push((pack.clone(), size));
        } else if !waiting.contains(&pack.id) {
            plan.delete.push((pack.id, size));
        }
    }
    plan
}
