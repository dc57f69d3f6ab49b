//! Start-up check of the files that may hold credentials: a kubeconfig carries tokens or client
//! keys, and the config file names the kubeconfig. Either being readable by every local user
//! is worth one warning (it is not an error: the operator may have reasons).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Settings;

/// Warns once for each of the config file and the kubeconfig(s) the daemon will read that
/// others may read (mode & 0o004). Returns the paths it warned about.
pub fn warn_about_readable_files(settings: &Settings) -> Vec<PathBuf> {
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(c) = &settings.config_file {
        files.push((c.path.clone(), "config file"));
    }
    for path in kubeconfig_paths(settings) {
        files.push((path, "kubeconfig"));
    }
    files
        .into_iter()
        .filter(|(path, what)| warn_if_others_can_read(path, what))
        .map(|(path, _)| path)
        .collect()
}

/// The kubeconfig files kube will read, resolved as kubectl does.
fn kubeconfig_paths(settings: &Settings) -> Vec<PathBuf> {
    if let Some(k) = &settings.kubeconfig {
        return vec![k.value.clone()];
    }
    if let Some(paths) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        return std::env::split_paths(&paths)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    std::env::var_os("HOME")
        .map(|home| vec![Path::new(&home).join(".kube").join("config")])
        .unwrap_or_default()
}

/// One warning naming the file and its mode when `mode & 0o004`; a missing file is left to
/// whoever reads it.
pub fn warn_if_others_can_read(path: &Path, what: &str) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o004 == 0 {
        return false;
    }
    tracing::warn!(
        file = %path.display(),
        mode = format_args!("{mode:04o}"),
        "{what} {} is readable by every local user (mode {mode:04o}); it may hold credentials: chmod o-r {}",
        path.display(),
        path.display()
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_file_others_can_read_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, "x").unwrap();
        for (mode, warned) in [(0o600, false), (0o640, false), (0o644, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                warn_if_others_can_read(&path, "kubeconfig"),
                warned,
                "{mode:o}"
            );
        }
        assert!(!warn_if_others_can_read(
            &dir.path().join("missing"),
            "kubeconfig"
        ));
    }
}
