//! The postmaster as a child of the test process: finding the binaries, initdb as an
//! unprivileged user when run as root, starting it tied to the process, waiting until it is
//! ready, and cleaning up after test processes that are gone.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// initdb and the first start on a loaded 2-core machine take a few seconds.
pub(crate) const START_WAIT: Duration = Duration::from_secs(20);
pub(crate) const DIR_PREFIX: &str = "wam-pg-";

/// What the keeper thread saw when the postmaster exited; `None` while it runs. One per start
/// of a postmaster, so a stopped cluster's old exit does not look like the new one's.
pub(crate) type Exited = Arc<Mutex<Option<String>>>;

/// Who owns the cluster's files and runs its processes: `None` for ourselves.
pub(crate) type Owner = Option<(u32, u32)>;

/// How a postmaster is run; the same for every start of one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub bin: PathBuf,
    /// The socket, `postgres.log` and (with TLS) the certificate and key.
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub owner: Owner,
    /// fsync, synchronous_commit and full_page_writes as a production server has them.
    pub durable: bool,
    /// `ssl=on` with `server.crt`/`server.key` in `dir`.
    pub ssl: bool,
    /// TCP on 127.0.0.1:`port` besides the socket.
    pub tcp: bool,
}

pub(crate) fn find_bindir() -> Option<PathBuf> {
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

/// A private directory for a cluster, owned by whoever will run it.
pub(crate) fn make_dir(dir: &Path, owner: Owner) -> Result<(), String> {
    // A leftover of a dead process that had our pid.
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        chown(dir, uid, gid)?;
    }
    Ok(())
}

/// initdb refuses to run as root: as root the cluster belongs to `postgres` (else `nobody`).
pub(crate) fn unprivileged_owner() -> Result<Owner, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // getpwnam's record is static and shared: one caller at a time.
    static LOOKUP: Mutex<()> = Mutex::new(());
    let _one = LOOKUP
        .lock()
        .map_err(|_| "getpwnam lock poisoned".to_string())?;
    for user in [c"postgres", c"nobody"] {
        // SAFETY: a NUL-terminated name; the returned record is read at once, under the lock
        // above, before any other getpw* call of ours could reuse it.
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

fn as_owner(cmd: &mut Command, owner: Owner) -> &mut Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

pub(crate) fn init(launch: &Launch) -> Result<(), String> {
    let (bin, dir, data) = (&launch.bin, &launch.dir, &launch.data);
    let mut last = String::new();
    // C.UTF-8 makes lower() and ordering of non-ASCII text behave as on a real server; a
    // system without that locale still gets a cluster.
    for locale in ["C.UTF-8", "C"] {
        let _ = std::fs::remove_dir_all(data);
        let mut cmd = Command::new(bin.join("initdb"));
        cmd.arg("-D")
            .arg(data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .arg(format!("--locale={locale}"))
            .current_dir(dir)
            .stdin(Stdio::null());
        if !launch.durable {
            cmd.arg("--no-sync");
        }
        let out = as_owner(&mut cmd, launch.owner)
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

/// A self-signed certificate for `localhost`/127.0.0.1 in `dir`, its key readable by the
/// owner alone (postgres refuses a key others can read).
pub(crate) fn make_certificate(dir: &Path, owner: Owner) -> Result<(), String> {
    const OPENSSL: &str = "/usr/bin/openssl";
    let openssl = if Path::new(OPENSSL).is_file() {
        PathBuf::from(OPENSSL)
    } else {
        PathBuf::from("openssl")
    };
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    let out = Command::new(&openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "a TLS cluster needs the openssl command to make its certificate \
                 (apt-get install openssl): run {}: {e}",
                openssl.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "openssl req failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", key.display()))?;
    if let Some((uid, gid)) = owner {
        chown(&key, uid, gid)?;
        chown(&crt, uid, gid)?;
    }
    Ok(())
}

/// A port nobody listens on now. Without TLS it only names the socket file.
pub(crate) fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// Starts the postmaster from a thread that lives as long as it runs: the death signal is
/// tied to the thread that forked, not to the process. Returns its pid and where its exit
/// will be told.
pub(crate) fn run(launch: &Launch) -> Result<(i32, Exited), String> {
    let dir = &launch.dir;
    let log_path = dir.join("postgres.log");
    // Appended: a restarted cluster's log keeps what the first run said.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("open {}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
    let mut cmd = Command::new(launch.bin.join("postgres"));
    cmd.arg("-D")
        .arg(&launch.data)
        .arg("-k")
        .arg(dir)
        .arg("-p")
        .arg(launch.port.to_string())
        .args(["-c", "max_connections=300"]);
    if launch.durable {
        cmd.args([
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "full_page_writes=on",
        ]);
    } else {
        // A test database is never worth an fsync.
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    cmd.arg("-c").arg(if launch.tcp {
        "listen_addresses=127.0.0.1"
    } else {
        "listen_addresses="
    });
    if launch.ssl {
        cmd.args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                dir.join("server.crt").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("server.key").display()));
    }
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    as_owner(&mut cmd, launch.owner);
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
    let exited: Exited = Arc::new(Mutex::new(None));
    let told = exited.clone();
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
            if let Ok(mut exited) = told.lock() {
                *exited = Some(format!("{status:?}"));
            }
            // Ending here is harmless: the postmaster it was tied to is gone.
        })
        .map_err(|e| format!("keeper thread: {e}"))?;
    let pid = rx
        .recv()
        .map_err(|_| "the keeper thread ended without starting postgres".to_string())??;
    Ok((pid, exited))
}

/// Until the postmaster writes "ready" in its pid file, as pg_ctl waits.
pub(crate) fn wait_ready(launch: &Launch, exited: &Exited) -> Result<(), String> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let pid_file =
            std::fs::read_to_string(launch.data.join("postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(7).map(str::trim) == Some("ready") {
            return Ok(());
        }
        let gone = exited.lock().ok().and_then(|e| e.clone());
        if gone.is_some() || Instant::now() > deadline {
            let why = gone.map_or_else(
                || format!("not ready within {START_WAIT:?}"),
                |s| format!("postgres exited ({s})"),
            );
            return Err(format!("{why}; its log:\n{}", log_tail(&launch.dir)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Until the keeper thread has reaped the postmaster, `within` at most.
pub(crate) fn wait_exited(exited: &Exited, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if exited.lock().map_or(true, |e| e.is_some()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub(crate) fn log_tail(dir: &Path) -> String {
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

/// The test process a cluster directory belongs to: `wam-pg-<pid>` (the shared cluster) or
/// `wam-pg-<pid>-<n>` (one of its own).
pub(crate) fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(DIR_PREFIX)?;
    let pid = rest.split_once('-').map_or(rest, |(pid, _)| pid);
    pid.parse().ok()
}

/// Removes the clusters of test processes that are gone, and stops a postmaster of theirs
/// that somehow outlived them.
pub(crate) fn remove_stale(temp: &Path) {
    let me = std::process::id();
    for entry in std::fs::read_dir(temp).into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(owner_pid) else {
            continue;
        };
        if pid as u32 == me || alive(pid) {
            continue;
        }
        let data = entry.path().join("data");
        if let Some(postmaster) = postmaster_of(&data) {
            // SAFETY: kill has no memory preconditions; the pid is a postmaster of that
            // very data directory (checked by postmaster_of).
            unsafe { libc::kill(postmaster, libc::SIGQUIT) };
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// The live postmaster of this data directory, from its pid file.
pub(crate) fn postmaster_of(data: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse::<i32>()
        .ok()?;
    (alive(pid) && runs_on(pid, data)).then_some(pid)
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
