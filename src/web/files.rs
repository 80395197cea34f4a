//! Reading the files a web config names: paths relative to the web config's folder, every file
//! read remembered (so a change to any of them triggers a re-read), errors naming file and field.

use std::path::{Path, PathBuf};

/// A web configuration problem, naming the file, the field and the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {field}: {reason}")]
pub struct WebConfigError {
    pub file: PathBuf,
    pub field: String,
    pub reason: String,
}

/// Reads files relative to the web config file's folder and records what was read, so a change
/// to any of them (a rotated certificate) triggers a reload.
pub(super) struct Reader<'a> {
    pub(super) file: &'a Path,
    pub(super) watched: Vec<PathBuf>,
}

impl Reader<'_> {
    pub(super) fn error(&self, field: impl Into<String>, reason: impl ToString) -> WebConfigError {
        WebConfigError {
            file: self.file.to_path_buf(),
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The bytes of `path` (relative to the config file's folder) for `field`.
    pub(super) fn read(&mut self, field: &str, path: &Path) -> Result<Vec<u8>, WebConfigError> {
        let full = match self.file.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        };
        self.watched.push(full.clone());
        std::fs::read(&full).map_err(|e| self.error(field, format!("{}: {e}", full.display())))
    }
}
