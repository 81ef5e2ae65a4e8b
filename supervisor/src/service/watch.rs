//! Watch mode's file watcher: one `notify` watcher (inotify on Linux, with its own thread) for
//! every watched service. Its callback only matches paths and marks services in a small map,
//! then wakes the actor's loop: it never waits on the actor, and the actor never waits on it
//! but for the moment it takes the map.
//!
//! What is watched: each folder under a service's `watch` paths (a glob's folder part), one
//! watch per folder, leaving out `node_modules`, `.git` and `__pycache__` (so a large
//! `node_modules` costs nothing), at most [`MAX_FOLDERS`] per service. What counts as a change:
//! a file created, written, removed or renamed; not reads or metadata. Ignored: anything inside
//! those folders, log files (`*.log`, rotated `*.log.N`, and the service's own log and its
//! rotations), and editors' scratch files (`*.swp`, `*~`, `.#*`, Vim's `4913`). A folder
//! created later is watched from the service's next watch restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use globset::{Glob, GlobSet, GlobSetBuilder};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::config::ServiceSpec;

/// Folder names never watched nor reacted to.
pub(crate) const IGNORED_FOLDERS: [&str; 3] = ["node_modules", ".git", "__pycache__"];
/// Most folders watched for one service (each is an inotify watch, a limited resource).
pub(crate) const MAX_FOLDERS: usize = 4096;

/// What one service watches.
#[derive(Debug)]
struct Watched {
    /// Plain paths: a change at or below one matches.
    paths: Vec<PathBuf>,
    /// Globs, matched against the whole path.
    globs: GlobSet,
    /// The service's own log file: it and its rotations are ignored.
    own_log: Option<PathBuf>,
}

impl Watched {
    fn matches(&self, path: &Path) -> bool {
        if let Some(log) = &self.own_log
            && let (Some(dir), Some(name)) = (log.parent(), log.file_name())
            && path.parent() == Some(dir)
            && path
                .file_name()
                .is_some_and(|f| f.as_encoded_bytes().starts_with(name.as_encoded_bytes()))
        {
            return false;
        }
        self.paths.iter().any(|p| path.starts_with(p)) || self.globs.is_match(path)
    }
}

/// Whether a change at `path` is ignored whatever the service.
pub(crate) fn ignored(path: &Path) -> bool {
    if path.components().any(|c| {
        let c = c.as_os_str();
        IGNORED_FOLDERS.iter().any(|i| c == *i)
    }) {
        return true;
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let rotated_log = name
        .rsplit_once(".log.")
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    name.ends_with(".log")
        || rotated_log
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with('~')
        || name.starts_with(".#")
        || name == "4913"
}

/// The folder part of a `watch` entry (up to its first component with a glob character), and
/// whether it is a glob.
fn split_glob(path: &Path) -> (PathBuf, bool) {
    let mut root = PathBuf::new();
    for c in path.components() {
        if c.as_os_str()
            .to_str()
            .is_some_and(|s| s.contains(['*', '?', '[', '{']))
        {
            return (root, true);
        }
        root.push(c);
    }
    (root, false)
}

/// The folders under `root` to watch, without the ignored ones and symlinks; at most `max`.
fn folders(root: &Path, max: usize) -> (Vec<PathBuf>, bool) {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if out.len() >= max {
            return (out, true);
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        out.push(dir);
        for e in entries.flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let name = e.file_name();
            if is_dir && !IGNORED_FOLDERS.iter().any(|i| name == *i) {
                todo.push(e.path());
            }
        }
    }
    (out, false)
}

/// Changes seen and not yet taken by the actor: service → the first changed path.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pending: Mutex<BTreeMap<u64, String>>,
    /// Wakes the actor's loop.
    pub(crate) wake: tokio::sync::Notify,
}

impl Changes {
    /// Takes what changed since the last call.
    pub(crate) fn take(&self) -> BTreeMap<u64, String> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The watcher of every watched service.
pub(crate) struct FileWatcher {
    watcher: notify::RecommendedWatcher,
    services: Arc<Mutex<BTreeMap<u64, Watched>>>,
    /// Folders watched, each with the services it is watched for: a folder's inotify watch is
    /// given up when its last service is.
    folders: HashMap<PathBuf, BTreeSet<u64>>,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileWatcher")
    }
}

impl FileWatcher {
    /// Starts the watcher thread; changes go to `changes`.
    pub(crate) fn new(changes: Arc<Changes>) -> notify::Result<FileWatcher> {
        let services: Arc<Mutex<BTreeMap<u64, Watched>>> = Arc::default();
        let seen = services.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let counts = matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Any
                    | EventKind::Modify(
                        notify::event::ModifyKind::Data(_)
                            | notify::event::ModifyKind::Name(_)
                            | notify::event::ModifyKind::Any
                    )
            );
            if !counts {
                return;
            }
            let mut hit = Vec::new();
            {
                let services = seen.lock().unwrap_or_else(|e| e.into_inner());
                for path in event.paths.iter().filter(|p| !ignored(p)) {
                    for (&id, w) in services.iter() {
                        if w.matches(path) {
                            hit.push((id, path.display().to_string()));
                        }
                    }
                }
            }
            if hit.is_empty() {
                return;
            }
            let mut pending = changes.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (id, path) in hit {
                pending.entry(id).or_insert(path);
            }
            drop(pending);
            changes.wake.notify_one();
        })?;
        Ok(FileWatcher {
            watcher,
            services,
            folders: HashMap::new(),
        })
    }

    /// Watches (again) the files of service `id`, in place of what it watched before. An
    /// error says what cannot be watched; the rest is watched.
    pub(crate) fn watch(&mut self, id: u64, spec: &ServiceSpec) -> Result<(), String> {
        let mut wanted: BTreeSet<PathBuf> = BTreeSet::new();
        let mut paths = Vec::new();
        let mut globs = GlobSetBuilder::new();
        let mut problems = Vec::new();
        for entry in &spec.watch {
            let (root, is_glob) = split_glob(entry);
            if is_glob {
                match Glob::new(&entry.to_string_lossy()) {
                    Ok(g) => {
                        globs.add(g);
                    }
                    Err(e) => problems.push(format!("{}: {e}", entry.display())),
                }
            } else {
                paths.push(entry.clone());
            }
            // A file is watched through its folder: editors replace files by renaming.
            let dir = if root.is_file() {
                root.parent().map(Path::to_path_buf).unwrap_or(root)
            } else {
                root
            };
            if !dir.is_dir() {
                problems.push(format!("{}: no such folder", dir.display()));
                continue;
            }
            let (found, cut) = folders(&dir, MAX_FOLDERS);
            if cut {
                problems.push(format!(
                    "{}: more than {MAX_FOLDERS} folders; only the first {MAX_FOLDERS} are watched",
                    dir.display()
                ));
            }
            for f in found {
                if let Some(owners) = self.folders.get_mut(&f) {
                    owners.insert(id);
                    wanted.insert(f);
                    continue;
                }
                match self.watcher.watch(&f, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.folders.insert(f.clone(), BTreeSet::from([id]));
                        wanted.insert(f);
                    }
                    Err(e) => {
                        problems.push(format!("{}: {e}", f.display()));
                        break;
                    }
                }
            }
        }
        // Folders it watched before and no longer does (its `watch` changed, or they are gone).
        self.release(id, |f| !wanted.contains(f));
        let globs = globs.build().unwrap_or_else(|_| GlobSet::empty());
        let watched = Watched {
            paths,
            globs,
            own_log: spec.log.clone(),
        };
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, watched);
        if problems.is_empty() {
            Ok(())
        } else {
            problems.truncate(3);
            Err(problems.join("; "))
        }
    }

    /// Stops watching the files of service `id`; its changes are no longer reported.
    pub(crate) fn unwatch(&mut self, id: u64) {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.release(id, |_| true);
    }

    /// Takes service `id` off the folders `which` selects, and gives up the inotify watch of
    /// each folder left without a service.
    fn release(&mut self, id: u64, which: impl Fn(&Path) -> bool) {
        let mut unused = Vec::new();
        for (f, owners) in &mut self.folders {
            if which(f) && owners.remove(&id) && owners.is_empty() {
                unused.push(f.clone());
            }
        }
        for f in unused {
            self.folders.remove(&f);
            // A folder already deleted has lost its watch with it.
            let _ = self.watcher.unwatch(&f);
        }
    }

    /// How many folders are watched (each an inotify watch).
    #[cfg(test)]
    fn folder_count(&self) -> usize {
        self.folders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_dependencies_vcs_caches_logs_and_scratch_files() {
        for p in [
            "/a/node_modules/x/index.js",
            "/a/.git/index",
            "/a/pkg/__pycache__/m.cpython-312.pyc",
            "/a/app.log",
            "/a/app.log.3",
            "/a/.main.py.swp",
            "/a/main.py~",
            "/a/.#main.py",
            "/a/4913",
        ] {
            assert!(ignored(Path::new(p)), "{p}");
        }
        for p in [
            "/a/main.py",
            "/a/src/app.js",
            "/a/catalog.json",
            "/a/login.py",
        ] {
            assert!(!ignored(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn globs_and_paths_match_and_the_own_log_does_not() {
        let mut globs = GlobSetBuilder::new();
        globs.add(Glob::new("/srv/app/src/**/*.js").expect("glob"));
        let w = Watched {
            paths: vec![PathBuf::from("/srv/app/config")],
            globs: globs.build().expect("set"),
            own_log: Some(PathBuf::from("/srv/app/config/out.txt")),
        };
        assert!(w.matches(Path::new("/srv/app/src/a/b.js")));
        assert!(!w.matches(Path::new("/srv/app/src/a/b.ts")));
        assert!(w.matches(Path::new("/srv/app/config/settings.toml")));
        assert!(!w.matches(Path::new("/srv/app/config/out.txt")));
        assert!(!w.matches(Path::new("/srv/app/config/out.txt.1")));
        assert_eq!(
            split_glob(Path::new("/srv/app/src/**/*.js")),
            (PathBuf::from("/srv/app/src"), true)
        );
        assert_eq!(
            split_glob(Path::new("/srv/app/main.py")),
            (PathBuf::from("/srv/app/main.py"), false)
        );
    }

    #[test]
    fn folders_are_given_up_with_their_last_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        let changes = Arc::new(Changes::default());
        let mut w = FileWatcher::new(changes).expect("watcher");
        let spec = |watch: Vec<PathBuf>| ServiceSpec {
            name: None,
            script: "app.js".into(),
            args: Vec::new(),
            cwd: dir.path().to_path_buf(),
            log: None,
            env: Default::default(),
            restart_at: vec![100],
            restart_ok: std::time::Duration::from_secs(60),
            strip_ansi: false,
            interpreter: None,
            node_path: None,
            kill_timeout: std::time::Duration::from_secs(1),
            log_max_size: 0,
            log_keep: 0,
            watchdog: None,
            max_memory: None,
            depends_on: Vec::new(),
            watch,
            watch_off: false,
        };
        w.watch(1, &spec(vec![a.clone()])).expect("watch 1");
        w.watch(2, &spec(vec![a.clone(), b.clone()]))
            .expect("watch 2");
        assert_eq!(w.folder_count(), 3);
        w.unwatch(2);
        assert_eq!(w.folder_count(), 2, "a and a/sub are still service 1's");
        // Service 1's `watch` changed to b: a's folders go.
        w.watch(1, &spec(vec![b.clone()])).expect("rewatch 1");
        assert_eq!(w.folder_count(), 1);
        w.unwatch(1);
        assert_eq!(w.folder_count(), 0);
        assert!(w.services.lock().expect("lock").is_empty());
    }
}
