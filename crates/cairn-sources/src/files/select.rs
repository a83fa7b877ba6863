//! Path patterns in gitignore syntax, for `--exclude` (backup) and `--include` (restore).

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::FilesError;

/// A set of gitignore-style patterns, matched against paths relative to a root.
#[derive(Clone)]
pub struct Patterns {
    matcher: Gitignore,
    empty: bool,
}

impl Patterns {
    /// Build from patterns and from files holding one pattern per line (`#` comments).
    pub fn new(patterns: &[String], files: &[std::path::PathBuf]) -> Result<Patterns, FilesError> {
        let mut builder = GitignoreBuilder::new(".");
        let mut empty = true;
        for p in patterns {
            builder
                .add_line(None, p)
                .map_err(|e| FilesError::Pattern { pattern: p.clone(), message: e.to_string() })?;
            empty = false;
        }
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|source| FilesError::Path { path: f.clone(), source })?;
            for line in text.lines() {
                builder.add_line(Some(f.clone()), line).map_err(|e| FilesError::Pattern {
                    pattern: line.to_string(),
                    message: format!("{e} (in {})", f.display()),
                })?;
                empty &= line.trim().is_empty() || line.trim_start().starts_with('#');
            }
        }
        let matcher =
            builder.build().map_err(|e| FilesError::Pattern { pattern: String::new(), message: e.to_string() })?;
        Ok(Patterns { matcher, empty })
    }

    /// No patterns at all.
    pub fn none() -> Patterns {
        Patterns::new(&[], &[]).expect("no patterns cannot fail")
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `rel` (relative, no leading `/`) matches, by itself.
    pub fn matches(&self, rel: &Path, is_dir: bool) -> bool {
        !self.empty && self.matcher.matched(rel, is_dir).is_ignore()
    }

    /// Whether `rel` or any of its parents matches.
    pub fn matches_or_parent(&self, rel: &Path, is_dir: bool) -> bool {
        !self.empty && self.matcher.matched_path_or_any_parents(rel, is_dir).is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_semantics() {
        let p =
            Patterns::new(&["__pycache__".into(), "*.log".into(), "/build".into(), "!keep.log".into()], &[]).unwrap();
        assert!(p.matches(Path::new("a/__pycache__"), true));
        assert!(p.matches(Path::new("x.log"), false));
        assert!(p.matches(Path::new("deep/er/x.log"), false));
        assert!(!p.matches(Path::new("keep.log"), false));
        assert!(p.matches(Path::new("build"), true));
        assert!(!p.matches(Path::new("src/build"), true), "anchored patterns match at the root only");
        assert!(p.matches_or_parent(Path::new("build/out/x"), false));
        assert!(!Patterns::none().matches(Path::new("x"), false));
    }
}
