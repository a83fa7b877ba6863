//! The mark step: take unused and mostly unused packs out of the index, and list them, with
//! the packs no index file names, in a new mark.
//!
//! Every pack an index file names gets a verdict from the blobs the snapshots use:
//! **unused** (none), **repack** (its unused share of blob bytes exceeds the threshold) or
//! **keep**. A kept pack stays whole in the index, unused blobs included: taking single
//! blobs out of a pack that stays would leave nothing to revive if a running backup reused
//! one. Repacked packs have their used blobs — those no kept pack holds — copied as sealed
//! bytes (a blob is sealed with its id as associated data, not its position) into new packs,
//! after checking that each opens to its id; a pack with a damaged blob is kept instead.
//!
//! Index files naming an unused or repacked pack are rewritten: new files name the new packs
//! and the kept packs of those files, then the mark is written, then the old files are
//! deleted. Index files a concurrent backup wrote after the survey are not touched.
//!
//! A crash before the mark leaves new packs (unindexed, marked by the next run) or new index
//! files duplicating entries of the old ones (harmless); a crash after it leaves old index
//! files still naming marked packs, which the sweep then leaves alone as live.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::mark::{Mark, MarkReason, MarkedPack};
use super::survey::Survey;
use super::{write_index_files, PruneError, PruneOptions, PruneProgress, PruneReport};
use crate::id::Id;
use crate::index::IndexedPack;
use crate::pack::{pack_key, BlobKind, PackBuilder, PackEntry};
use crate::repo::Repository;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Unused,
    Repack,
}

/// Used blobs to copy out of one repacked pack.
struct ToCopy {
    pack: Id,
    /// Stored size of the pack.
    size: u64,
    entries: Vec<PackEntry>,
}

/// Run the mark step, updating the survey to what is left.
pub(super) fn run(
    repo: &Repository,
    survey: &mut Survey,
    options: &PruneOptions,
    progress: &dyn PruneProgress,
    report: &mut PruneReport,
) -> Result<(), PruneError> {
    let live: BTreeMap<Id, &IndexedPack> = survey.live_packs().into_iter().collect();
    let mut verdicts = classify(survey, &live, options.repack_threshold, report);
    // Before the repack writes packs that are not indexed yet.
    let unindexed = unindexed(repo, survey, &live, options.dry_run)?;
    let copies = plan_copies(survey, &live, &verdicts);
    let new_packs = if options.dry_run {
        estimate_repack(&copies, options.pack_size, report);
        Vec::new()
    } else {
        repack(repo, &copies, options.pack_size, progress, &mut verdicts, report)?
    };

    let mut marked = Vec::new();
    for (id, verdict) in &verdicts {
        let size = survey.stored.get(id).copied().unwrap_or(0);
        let reason = match verdict {
            Verdict::Keep => {
                report.kept.add(size);
                continue;
            }
            Verdict::Unused => {
                report.unused.add(size);
                MarkReason::Unused
            }
            Verdict::Repack => {
                report.repacked.add(size);
                MarkReason::Repacked
            }
        };
        marked.push(MarkedPack { pack: (*live[id]).clone(), size, reason });
    }
    let dropped: HashSet<Id> = marked.iter().map(|p| p.pack.id).collect();
    for p in &unindexed {
        report.unindexed.add(p.size);
    }
    marked.extend(unindexed);

    commit(repo, survey, new_packs, &dropped, marked, options.dry_run, report)?;
    drop_damaged_marks(repo, survey, options.dry_run, report)
}

/// A verdict for every indexed pack.
fn classify(
    survey: &Survey,
    live: &BTreeMap<Id, &IndexedPack>,
    threshold: f64,
    report: &mut PruneReport,
) -> BTreeMap<Id, Verdict> {
    let mut verdicts = BTreeMap::new();
    for (id, pack) in live {
        let total: u64 = pack.entries.iter().map(|e| u64::from(e.length)).sum();
        let used: u64 = pack.entries.iter().filter(|e| survey.used.contains(&e.id)).map(|e| u64::from(e.length)).sum();
        let unused_share = if total == 0 { 0.0 } else { (total - used) as f64 / total as f64 };
        let verdict = if !pack.entries.iter().any(|e| survey.used.contains(&e.id)) {
            Verdict::Unused
        } else if !survey.stored.contains_key(id) {
            report.warnings.push(format!(
                "pack {} is named by the index but missing from storage, with blobs snapshots use; \
                 left in the index (check names the damaged snapshots)",
                id.short()
            ));
            Verdict::Keep
        } else if unused_share > threshold {
            Verdict::Repack
        } else {
            Verdict::Keep
        };
        verdicts.insert(*id, verdict);
    }
    verdicts
}

/// Packs in storage that no index file and no readable mark names, with their entries
/// read from their headers (not in a dry run).
fn unindexed(
    repo: &Repository,
    survey: &Survey,
    live: &BTreeMap<Id, &IndexedPack>,
    dry_run: bool,
) -> Result<Vec<MarkedPack>, PruneError> {
    let marked: HashSet<Id> = survey.marks.iter().flat_map(|(_, m)| m.packs.iter().map(|p| p.pack.id)).collect();
    let mut found: Vec<(Id, u64)> = survey
        .stored
        .iter()
        .filter(|(id, _)| !live.contains_key(id) && !marked.contains(id))
        .map(|(i, s)| (*i, *s))
        .collect();
    found.sort_unstable();
    let mut out = Vec::with_capacity(found.len());
    for (id, size) in found {
        // An unreadable header leaves the entries empty: nobody can have used its blobs,
        // since reading them needs an index file or mark naming them.
        let header = if dry_run { None } else { repo.read_pack_header(&id, size)? };
        let pack = header.unwrap_or(IndexedPack { id, kind: BlobKind::Data, entries: Vec::new() });
        out.push(MarkedPack { pack, size, reason: MarkReason::Unindexed });
    }
    Ok(out)
}

/// Which used blobs to copy out of each repacked pack: those no kept pack holds, once.
fn plan_copies(survey: &Survey, live: &BTreeMap<Id, &IndexedPack>, verdicts: &BTreeMap<Id, Verdict>) -> Vec<ToCopy> {
    let in_kept: HashSet<Id> = verdicts
        .iter()
        .filter(|(_, v)| **v == Verdict::Keep)
        .flat_map(|(id, _)| live[id].entries.iter().map(|e| e.id))
        .collect();
    let mut chosen = HashSet::new();
    verdicts
        .iter()
        .filter(|(_, v)| **v == Verdict::Repack)
        .map(|(id, _)| ToCopy {
            pack: *id,
            size: survey.stored.get(id).copied().unwrap_or(0),
            entries: live[id]
                .entries
                .iter()
                .filter(|e| survey.used.contains(&e.id) && !in_kept.contains(&e.id) && chosen.insert(e.id))
                .copied()
                .collect(),
        })
        .collect()
}

/// What a repack would write, for a dry run.
fn estimate_repack(copies: &[ToCopy], pack_size: usize, report: &mut PruneReport) {
    let mut bytes: HashMap<BlobKind, u64> = HashMap::new();
    for e in copies.iter().flat_map(|c| &c.entries) {
        *bytes.entry(e.kind).or_default() += u64::from(e.length);
    }
    for total in bytes.into_values().filter(|b| *b > 0) {
        report.written.packs += total.div_ceil(pack_size.max(1) as u64) as usize;
        report.written.bytes += total;
    }
}

/// Copy the planned blobs into new packs and upload them. A pack with a blob that does not
/// open to its id is kept instead (its verdict becomes keep).
fn repack(
    repo: &Repository,
    copies: &[ToCopy],
    pack_size: usize,
    progress: &dyn PruneProgress,
    verdicts: &mut BTreeMap<Id, Verdict>,
    report: &mut PruneReport,
) -> Result<Vec<IndexedPack>, PruneError> {
    let mut out = Vec::new();
    let mut builders: [PackBuilder; 2] = Default::default();
    for (done, copy) in copies.iter().enumerate() {
        progress.packs_repacked(done, copies.len());
        let Some(&first) = copy.entries.first() else { continue };
        let start = copy.entries.iter().map(|e| e.offset).min().unwrap_or(first.offset);
        let (bytes, problem) = read_verified(repo, copy, start)?;
        if let Some(problem) = problem {
            verdicts.insert(copy.pack, Verdict::Keep);
            report.warnings.push(format!("pack {} kept instead of repacked: {problem}", copy.pack.short()));
            continue;
        }
        for e in &copy.entries {
            let at = (e.offset - start) as usize;
            let builder = &mut builders[e.kind as usize];
            builder.add(e.kind, e.id, &bytes[at..at + e.length as usize], e.raw_len);
            if builder.size() >= pack_size {
                out.push(upload(repo, e.kind, std::mem::take(builder), report)?);
            }
        }
    }
    for kind in [BlobKind::Data, BlobKind::Tree] {
        let builder = std::mem::take(&mut builders[kind as usize]);
        if !builder.is_empty() {
            out.push(upload(repo, kind, builder, report)?);
        }
    }
    progress.packs_repacked(copies.len(), copies.len());
    Ok(out)
}

/// Read the range of a pack holding `copy`'s blobs and check that each opens to its id.
/// Returns the bytes from `start` on, and what is wrong if something is.
fn read_verified(repo: &Repository, copy: &ToCopy, start: u32) -> Result<(Vec<u8>, Option<String>), PruneError> {
    let end = copy.entries.iter().map(|e| u64::from(e.offset) + u64::from(e.length)).max().unwrap_or(0);
    if end > copy.size {
        return Ok((Vec::new(), Some(format!("it is truncated ({} bytes)", copy.size))));
    }
    let bytes = match repo.storage().get_range(&pack_key(&copy.pack), start.into(), end - u64::from(start)) {
        Err(e) if e.is_not_found() => return Ok((Vec::new(), Some("it is gone from storage".into()))),
        other => other?,
    };
    for e in &copy.entries {
        let at = (e.offset - start) as usize;
        if let Err(detail) = repo.open_blob(&e.id, &bytes[at..at + e.length as usize], e.raw_len) {
            return Ok((bytes, Some(format!("blob {}: {detail}", e.id.short()))));
        }
    }
    Ok((bytes, None))
}

fn upload(
    repo: &Repository,
    kind: BlobKind,
    builder: PackBuilder,
    report: &mut PruneReport,
) -> Result<IndexedPack, PruneError> {
    let (bytes, id, entries) = builder.finish(repo.keys());
    repo.storage().put(&pack_key(&id), &bytes)?;
    report.written.add(bytes.len() as u64);
    Ok(IndexedPack { id, kind, entries })
}

/// Write the new index files, the mark, then delete the index files they replace.
fn commit(
    repo: &Repository,
    survey: &mut Survey,
    new_packs: Vec<IndexedPack>,
    dropped: &HashSet<Id>,
    marked: Vec<MarkedPack>,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<(), PruneError> {
    let (affected, untouched): (Vec<_>, Vec<_>) = std::mem::take(&mut survey.index_files)
        .into_iter()
        .partition(|f| f.packs.iter().any(|p| dropped.contains(&p.id)));
    // Kept packs of rewritten files move to the new files, unless an untouched file names them.
    let mut carried: HashSet<Id> = untouched.iter().flat_map(|f| f.packs.iter().map(|p| p.id)).collect();
    let mut packs = new_packs;
    for pack in affected.iter().flat_map(|f| &f.packs) {
        if !dropped.contains(&pack.id) && carried.insert(pack.id) {
            packs.push(pack.clone());
        }
    }
    survey.index_files = untouched;
    if !packs.is_empty() {
        let written = write_index_files(repo, packs, dry_run)?;
        report.index_files_written += written.len();
        survey.index_files.extend(written);
    }
    if !marked.is_empty() {
        let now = Utc::now();
        let created = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let mark = Mark { created, packs: marked };
        let (key, sealed) = mark.seal(repo.keys());
        if !dry_run {
            repo.storage().put(&key, &sealed)?;
        }
        report.mark = Some(key.clone());
        survey.marks.push((key, mark));
    }
    for file in &affected {
        if !dry_run {
            repo.storage().delete(&file.key)?;
        }
    }
    report.index_files_deleted += affected.len();
    Ok(())
}

/// Delete marks that do not open. Their packs, if still out of the index, were just marked
/// again as unindexed, so nothing depends on them.
fn drop_damaged_marks(
    repo: &Repository,
    survey: &mut Survey,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<(), PruneError> {
    for (key, error) in std::mem::take(&mut survey.damaged_marks) {
        let done = if dry_run { "would be deleted" } else { "deleted" };
        if !dry_run {
            repo.storage().delete(&key)?;
        }
        report.warnings.push(format!("{error}: {done}; packs it may list are marked again"));
    }
    Ok(())
}
