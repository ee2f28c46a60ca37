//! Which document root serves a request: one for every `Host`, or a table
//! of virtual hosts loaded from YAML.
//!
//! Document roots are canonicalized once at startup so that the per-request
//! containment check in [`crate::resolve`] compares canonical paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors loading the document roots; all are configuration mistakes
/// reported at startup, never per request.
#[derive(Debug, thiserror::Error)]
pub enum SitesError {
    #[error("cannot read virtual host file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad virtual host file {path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("document root {path} is not a usable directory: {reason}")]
    DocRoot { path: PathBuf, reason: String },
    #[error("host name {0:?} is listed twice")]
    DuplicateHost(String),
    #[error("host name {0:?} is empty or contains ':', '/' or whitespace")]
    BadHostName(String),
    #[error("docRoot {0:?} must be a path below --docroot (relative, without '..')")]
    DocRootOutside(PathBuf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VirtualHostFile {
    virtual_hosts: Vec<VirtualHostEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VirtualHostEntry {
    host_name: String,
    doc_root: PathBuf,
}

/// The document roots of a server, indexed so a cache can key on them.
#[derive(Debug, Clone)]
pub struct Sites {
    roots: Vec<PathBuf>,
    /// `None`: every Host is served from `roots[0]`.
    by_host: Option<HashMap<String, usize>>,
}

impl Sites {
    /// Every Host is served from `docroot`.
    pub fn single(docroot: &Path) -> Result<Sites, SitesError> {
        Ok(Sites {
            roots: vec![canonical_dir(docroot)?],
            by_host: None,
        })
    }

    /// Virtual hosts from the YAML file at `config`; each `docRoot` is taken
    /// relative to `docroot`.
    pub fn from_yaml_file(docroot: &Path, config: &Path) -> Result<Sites, SitesError> {
        let text = std::fs::read_to_string(config).map_err(|source| SitesError::Read {
            path: config.to_owned(),
            source,
        })?;
        Self::from_yaml(docroot, &text).map_err(|err| match err {
            SitesError::Yaml { source, .. } => SitesError::Yaml {
                path: config.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Virtual hosts from YAML text (`virtual_hosts: [{hostName, docRoot}]`).
    pub fn from_yaml(docroot: &Path, yaml: &str) -> Result<Sites, SitesError> {
        let file: VirtualHostFile = serde_yaml_ng::from_str(yaml).map_err(|source| SitesError::Yaml {
            path: PathBuf::new(),
            source,
        })?;
        let base = canonical_dir(docroot)?;
        let mut roots = Vec::new();
        let mut by_host = HashMap::new();
        for entry in file.virtual_hosts {
            let name = entry.host_name.to_ascii_lowercase();
            if name.is_empty() || name.chars().any(|c| c == ':' || c == '/' || c.is_whitespace()) {
                return Err(SitesError::BadHostName(entry.host_name));
            }
            let below = entry
                .doc_root
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
            if !below {
                return Err(SitesError::DocRootOutside(entry.doc_root));
            }
            let root = canonical_dir(&docroot.join(&entry.doc_root))?;
            // Spelled below, but a symlink on the way may lead out.
            if !root.starts_with(&base) {
                return Err(SitesError::DocRootOutside(entry.doc_root));
            }
            let index = roots.len();
            roots.push(root);
            if by_host.insert(name, index).is_some() {
                return Err(SitesError::DuplicateHost(entry.host_name));
            }
        }
        Ok(Sites {
            roots,
            by_host: Some(by_host),
        })
    }

    /// The index (for [`Sites::root`]) of the site serving `host_header`, or
    /// `None` when virtual hosts are configured and this host is not one.
    pub fn lookup(&self, host_header: &str) -> Option<usize> {
        match &self.by_host {
            None => Some(0),
            Some(table) => {
                let name = host_name(host_header);
                if let Some(&index) = table.get(name) {
                    return Some(index);
                }
                table.get(&name.to_ascii_lowercase()).copied()
            }
        }
    }

    /// The canonical document root of site `index`.
    pub fn root(&self, index: usize) -> &Path {
        &self.roots[index]
    }

    /// How many document roots there are.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are no document roots (an empty virtual host list).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

/// The host part of a `Host` header: `website1:8080` -> `website1`,
/// `[::1]:8080` -> `[::1]`.
pub fn host_name(host_header: &str) -> &str {
    let host = host_header.trim();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

fn canonical_dir(path: &Path) -> Result<PathBuf, SitesError> {
    let canonical = std::fs::canonicalize(path).map_err(|err| SitesError::DocRoot {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    if !canonical.is_dir() {
        return Err(SitesError::DocRoot {
            path: path.to_owned(),
            reason: "not a directory".to_owned(),
        });
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docroot() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("htdocs1")).unwrap();
        std::fs::create_dir(dir.path().join("htdocs2")).unwrap();
        dir
    }

    #[test]
    fn host_names_drop_the_port() {
        assert_eq!(host_name("website1"), "website1");
        assert_eq!(host_name("website1:8080"), "website1");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }

    #[test]
    fn virtual_hosts_map_names_to_roots() {
        let dir = docroot();
        let yaml = "virtual_hosts:\n  - hostName: website1\n    docRoot: htdocs1\n  - hostName: Website2\n    docRoot: htdocs2\n";
        let sites = Sites::from_yaml(dir.path(), yaml).unwrap();
        assert_eq!(sites.len(), 2);
        let one = sites.lookup("website1:8080").unwrap();
        assert!(sites.root(one).ends_with("htdocs1"));
        let two = sites.lookup("WEBSITE2").unwrap();
        assert!(sites.root(two).ends_with("htdocs2"));
        assert_eq!(sites.lookup("website3"), None);
        assert_eq!(sites.lookup("localhost"), None);
    }

    #[test]
    fn single_root_serves_every_host() {
        let dir = docroot();
        let sites = Sites::single(dir.path()).unwrap();
        assert_eq!(sites.lookup("anything:1"), Some(0));
        assert_eq!(sites.root(0), std::fs::canonicalize(dir.path()).unwrap());
    }

    #[test]
    fn bad_configurations_are_refused() {
        let dir = docroot();
        let dup = "virtual_hosts:\n  - {hostName: a, docRoot: htdocs1}\n  - {hostName: A, docRoot: htdocs2}\n";
        assert!(matches!(
            Sites::from_yaml(dir.path(), dup),
            Err(SitesError::DuplicateHost(_))
        ));
        let missing = "virtual_hosts:\n  - {hostName: a, docRoot: nowhere}\n";
        assert!(matches!(
            Sites::from_yaml(dir.path(), missing),
            Err(SitesError::DocRoot { .. })
        ));
        let port = "virtual_hosts:\n  - {hostName: 'a:80', docRoot: htdocs1}\n";
        assert!(matches!(
            Sites::from_yaml(dir.path(), port),
            Err(SitesError::BadHostName(_))
        ));
        for outside in ["/etc", "../htdocs1", "htdocs1/../.."] {
            let yaml = format!("virtual_hosts:\n  - {{hostName: a, docRoot: '{outside}'}}\n");
            assert!(
                matches!(Sites::from_yaml(dir.path(), &yaml), Err(SitesError::DocRootOutside(_))),
                "{outside}"
            );
        }
        // A docRoot spelled below --docroot but a symlink leading out of it.
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("away")).unwrap();
        let yaml = "virtual_hosts:\n  - {hostName: a, docRoot: away}\n";
        assert!(matches!(
            Sites::from_yaml(dir.path(), yaml),
            Err(SitesError::DocRootOutside(_))
        ));
        let typo = "virtual_host:\n  - {hostName: a, docRoot: htdocs1}\n";
        assert!(matches!(
            Sites::from_yaml(dir.path(), typo),
            Err(SitesError::Yaml { .. })
        ));
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(matches!(
            Sites::single(&dir.path().join("file")),
            Err(SitesError::DocRoot { .. })
        ));
    }
}
