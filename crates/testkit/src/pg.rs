//! The tests' PostgreSQL: a fresh database per call, so tests run in parallel.
//!
//! The server is the one `WAM_TEST_POSTGRES` names (an admin URL), else a throwaway cluster
//! this test process starts once from the installed binaries: data and unix socket in
//! `<temp>/wam-pg-<pid>`, no TCP, durability off (a test database is never worth an fsync).
//! The postmaster is tied to the process with `PR_SET_PDEATHSIG`, so however the test binary
//! ends (even `kill -9`) the cluster ends with it; the directories of dead processes are
//! removed by the next start. Where no PostgreSQL can be had, every call panics with the
//! install hint: a test never skips silently.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// Every name put into SQL here is one we made (`wam_t_<pid>_<n>`).
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub use crate::db::TestDb;

pub const HINT: &str = "install PostgreSQL (apt-get install postgresql) or set WAM_TEST_POSTGRES";
/// An admin URL of a running server; when set, no cluster is started.
pub const SERVER_ENV: &str = "WAM_TEST_POSTGRES";
/// initdb and the first start on a loaded 2-core machine take a few seconds.
const START_WAIT: Duration = Duration::from_secs(20);
const DIR_PREFIX: &str = "wam-pg-";

/// A new empty database; panics with [`HINT`] (and what went wrong) when there is no server.
pub async fn database() -> TestDb {
    match try_database().await {
        Ok(db) => db,
        Err(e) => panic!("no PostgreSQL for the tests: {e}\n{HINT}"),
    }
}

/// A new empty database named `wam_t_<pid>_<n>`, or why none could be had.
pub async fn try_database() -> Result<TestDb, String> {
    let admin = admin_url().await?;
    drop_released(&admin).await;
    let mut conn = PgConnection::connect(&admin)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(&admin)))?;
    let name = loop {
        let name = format!(
            "wam_t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let create = sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")));
        match create.execute(&mut conn).await {
            Ok(_) => break name,
            // Another host's test process with our pid on a shared server: take the next n.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => continue,
            Err(e) => return Err(format!("CREATE DATABASE {name}: {e}")),
        }
    };
    let _ = conn.close().await;
    let url = with_database(&admin, &name);
    Ok(TestDb::postgres(url, Release { admin, name }))
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// Databases whose tests are done, dropped by the next [`database`] call: a drop cannot
/// await, and the last few of a process are left to the cluster's own removal (or, on a
/// shared server, to whoever empties it).
static RELEASED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Queues its database (admin URL, name) for dropping when dropped.
pub(crate) struct Release {
    admin: String,
    name: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let released = (
            std::mem::take(&mut self.admin),
            std::mem::take(&mut self.name),
        );
        if let Ok(mut queue) = RELEASED.lock() {
            queue.push(released);
        }
    }
}

async fn drop_released(admin: &str) {
    let names: Vec<String> = {
        let Ok(mut queue) = RELEASED.lock() else {
            return;
        };
        let (ours, others): (Vec<_>, Vec<_>) = std::mem::take(&mut *queue)
            .into_iter()
            .partition(|(a, _)| a == admin);
        *queue = others;
        ours.into_iter().map(|(_, name)| name).collect()
    };
    if names.is_empty() {
        return;
    }
    let Ok(mut conn) = PgConnection::connect(admin).await else {
        return;
    };
    for name in names {
        // Best effort: a database left behind costs disk, not correctness. FORCE ends the
        // connections a finished test's pool may still hold.
        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
    let _ = conn.close().await;
}

async fn admin_url() -> Result<String, String> {
    if let Ok(url) = std::env::var(SERVER_ENV)
        && !url.trim().is_empty()
    {
        return Ok(url.trim().to_string());
    }
    let cluster = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(Cluster::start).clone())
        .await
        .map_err(|e| format!("starting the cluster panicked: {e}"))??;
    Ok(cluster.admin_url)
}

/// The admin URL with its database replaced by `name`; the query (socket directory, TLS)
/// kept.
pub fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.find('?') {
        Some(q) => admin.split_at(q),
        None => (admin, ""),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => match url[start..start + at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..start + colon], &url[start + at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// What the keeper thread saw when the postmaster exited; `None` while it runs.
static EXITED: Mutex<Option<String>> = Mutex::new(None);

#[derive(Debug, Clone)]
struct Cluster {
    admin_url: String,
    /// `<temp>/wam-pg-<pid>`: the socket, `data/` and `postgres.log`. Read by the tests
    /// that check the cluster ends with the process.
    #[cfg_attr(not(test), allow(dead_code))]
    dir: PathBuf,
    #[cfg_attr(not(test), allow(dead_code))]
    postmaster_pid: i32,
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let bin = find_bindir().ok_or_else(|| {
            "no initdb and postgres found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)"
                .to_string()
        })?;
        let temp = std::env::temp_dir();
        remove_stale(&temp);
        let dir = temp.join(format!("{DIR_PREFIX}{}", std::process::id()));
        // A leftover of a dead process that had our pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        let owner = unprivileged_owner()?;
        if let Some((uid, gid)) = owner {
            chown(&dir, uid, gid)?;
        }
        let data = dir.join("data");
        init(&bin, &dir, &data, owner)?;
        let port = free_port()?;
        let postmaster_pid = run_postmaster(&bin, &dir, &data, port, owner)?;
        wait_ready(&data, &dir)?;
        let admin_url = format!(
            "postgres://postgres@localhost:{port}/postgres?host={}",
            dir.display()
        );
        Ok(Self {
            admin_url,
            dir,
            postmaster_pid,
        })
    }
}

fn find_bindir() -> Option<PathBuf> {
    let usable = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if usable(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.into_iter().rev().find(|(_, d)| usable(d)) {
        return Some(dir);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| usable(d))
}

/// initdb refuses to run as root: as root the cluster belongs to `postgres` (else `nobody`).
fn unprivileged_owner() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for user in [c"postgres", c"nobody"] {
        // SAFETY: a NUL-terminated name; the returned record is read at once, before any
        // other getpw* call could reuse it (the cluster starts once, under the OnceLock).
        let pw = unsafe { libc::getpwnam(user.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null, points to the static record getpwnam filled.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(Some((uid, gid)));
        }
    }
    Err("running as root, and neither a postgres nor a nobody user exists".into())
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn init(bin: &Path, dir: &Path, data: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    let mut last = String::new();
    // C.UTF-8 makes lower() and ordering of non-ASCII text behave as on a real server; a
    // system without that locale still gets a cluster.
    for locale in ["C.UTF-8", "C"] {
        let _ = std::fs::remove_dir_all(data);
        let mut cmd = Command::new(bin.join("initdb"));
        cmd.arg("-D")
            .arg(data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .arg(format!("--locale={locale}"))
            .current_dir(dir)
            .stdin(Stdio::null());
        let out = as_owner(&mut cmd, owner)
            .output()
            .map_err(|e| format!("run {}: {e}", bin.join("initdb").display()))?;
        if out.status.success() {
            return Ok(());
        }
        last = format!(
            "initdb --locale={locale} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Err(last)
}

/// A port nobody listens on; it only names the socket file, as TCP stays off.
fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// Starts the postmaster from a thread that lives as long as the process: the death signal
/// is tied to the thread that forked, not to the process.
fn run_postmaster(
    bin: &Path,
    dir: &Path,
    data: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
) -> Result<i32, String> {
    let log_path = dir.join("postgres.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .arg("-k")
        .arg(dir)
        .arg("-p")
        .arg(port.to_string())
        .args([
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    as_owner(&mut cmd, owner);
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls. std runs it after setuid, so the signal setting is not
    // cleared by the credential change.
    unsafe {
        cmd.pre_exec(move || {
            // Descriptors the test process inherited without close-on-exec (a build lock
            // held by the cargo that ran it, say) must not live on in the cluster. Best
            // effort: kernels before 5.11 lack the flag.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: nobody would signal us.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("wam-pg-keeper".into())
        .spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = tx.send(Err(format!("run postgres: {e}")));
                    return;
                }
            };
            let _ = tx.send(Ok(child.id() as i32));
            let status = child.wait();
            if let Ok(mut exited) = EXITED.lock() {
                *exited = Some(format!("{status:?}"));
            }
            // Ending here is harmless: the postmaster it was tied to is gone.
        })
        .map_err(|e| format!("keeper thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the keeper thread ended without starting postgres".to_string())?
}

/// Until the postmaster writes "ready" in its pid file, as pg_ctl waits.
fn wait_ready(data: &Path, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(7).map(str::trim) == Some("ready") {
            return Ok(());
        }
        let exited = EXITED.lock().ok().and_then(|e| e.clone());
        if exited.is_some() || Instant::now() > deadline {
            let why = exited.map_or_else(
                || format!("not ready within {START_WAIT:?}"),
                |s| format!("postgres exited ({s})"),
            );
            return Err(format!("{why}; its log:\n{}", log_tail(dir)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_tail(dir: &Path) -> String {
    let mut log = String::new();
    if let Ok(mut f) = std::fs::File::open(dir.join("postgres.log")) {
        let _ = f.read_to_string(&mut log);
    }
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    log[start..].to_string()
}

/// Removes the clusters of test processes that are gone, and stops a postmaster of theirs
/// that somehow outlived them.
fn remove_stale(temp: &Path) {
    let me = std::process::id();
    for entry in std::fs::read_dir(temp).into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me || alive(pid) {
            continue;
        }
        let data = entry.path().join("data");
        if let Some(postmaster) = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            && alive(postmaster)
            && runs_on(postmaster, &data)
        {
            // SAFETY: kill has no memory preconditions; the pid is a postmaster of that
            // very data directory (checked above).
            unsafe { libc::kill(postmaster, libc::SIGQUIT) };
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A zombie answers kill(0) until reaped, and a container's pid 1 may never reap it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z")
}

/// Whether the process's command line names this data directory (a pid can be reused).
fn runs_on(pid: i32, data: &Path) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let want = data.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == want)
}

#[cfg(test)]
mod tests;
