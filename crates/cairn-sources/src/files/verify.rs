//! Verifying a folder capture: restore it into a scratch directory, then read every restored
//! file back and prove it: cut into chunks again with the capture's parameters, each chunk's
//! keyed hash must equal the blob id recorded in the tree, in order. Directories and symlink
//! targets are compared too.

use std::fs;
use std::path::Path;
use std::time::Instant;

use cairn_repo::chunker::Chunker;
use cairn_repo::{ChunkParams, Id, NodeKind, Repository};

use super::{restore, RestoreOptions};
use crate::verify::Verdict;
use crate::SourceError;

/// Restore the tree `root` into `scratch` (an empty directory) and prove every entry.
pub fn verify(repo: &Repository, root: Id, chunking: ChunkParams, scratch: &Path) -> Result<Verdict, SourceError> {
    let started = Instant::now();
    let outcome = restore(repo, root, scratch, &RestoreOptions::default(), &())?;
    let mut verdict = Verdict { scratch: scratch.display().to_string(), ..Verdict::default() };
    verdict.restore_secs = started.elapsed().as_secs_f64();
    for path in &outcome.damaged {
        verdict.problems.push(format!("{path}: its data in the repository is damaged; it could not be restored"));
    }
    for warning in &outcome.warnings {
        verdict.problems.push(format!("restoring: {warning}"));
    }
    let chunker = Chunker::new(repo.keys().gear(), chunking);
    check_tree(repo, &chunker, root, scratch, "", &mut verdict)?;
    Ok(verdict)
}

fn check_tree(
    repo: &Repository,
    chunker: &Chunker,
    tree: Id,
    dir: &Path,
    rel: &str,
    verdict: &mut Verdict,
) -> Result<(), SourceError> {
    for node in repo.load_tree(&tree)?.nodes {
        let name: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(node.name_bytes().into_owned());
        let path = dir.join(&name);
        let shown = format!("{rel}/{}", node.name);
        match node.kind {
            NodeKind::Dir => {
                verdict.check(path.is_dir(), || format!("{shown}: directory missing from the restored copy"));
                if let Some(subtree) = node.subtree.filter(|_| path.is_dir()) {
                    check_tree(repo, chunker, subtree, &path, &shown, verdict)?;
                }
            }
            NodeKind::Symlink => {
                let target = fs::read_link(&path).ok().map(|t| t.into_os_string().into_encoded_bytes());
                verdict.check(target == node.target_bytes(), || format!("{shown}: symlink target differs"));
            }
            NodeKind::File => {
                let ids: std::io::Result<Vec<Id>> = match fs::File::open(&path) {
                    Ok(file) => chunker.stream(file).map(|c| c.map(|c| repo.keys().blob_id(&c))).collect(),
                    Err(e) => Err(e),
                };
                match ids {
                    Err(e) => verdict.check(false, || format!("{shown}: cannot read the restored file: {e}")),
                    Ok(ids) => verdict.check(ids == node.content, || {
                        format!("{shown}: restored content differs from the recorded chunk hashes")
                    }),
                }
            }
        }
    }
    Ok(())
}
