//! A PostgreSQL cluster of a test's own, for what the shared one cannot do: be stopped and
//! started again under a running server, run durably as production does, or speak TLS.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::postmaster::{self, Exited, Launch};
use super::{TestDb, create_database, forget_released};

/// How a [`Cluster`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// fsync, synchronous_commit and full_page_writes on, as a production server: for
    /// benchmarks. Off, a commit never waits for the disk.
    pub durable: bool,
    /// `ssl=on` with a self-signed certificate made at start (needs the `openssl` command).
    /// TLS does not run over unix sockets: connect with [`Cluster::tcp_url`].
    pub ssl: bool,
}

/// A throwaway cluster: its data and socket in `<temp>/wam-pg-<pid>-<n>`, TCP on
/// 127.0.0.1:[`Cluster::port`] besides the socket (with or without TLS, so a client insisting
/// on TLS can be shown a server without it), the postmaster tied to the test process (it dies
/// with it, even on `kill -9`). Dropping it stops it and removes its directory.
#[derive(Debug)]
pub struct Cluster {
    launch: Launch,
    options: ClusterOptions,
    admin_url: String,
    /// The running postmaster (pid, where its exit is told); `None` while stopped.
    running: Mutex<Option<(i32, Exited)>>,
    /// Whether dropping removes the directory: the shared cluster's stays for the tests
    /// that look at it after the process.
    own_dir: bool,
}

/// A stop that takes longer is a bug of the cluster, not load.
const STOP_WAIT: Duration = Duration::from_secs(30);

impl Cluster {
    /// initdb and start a cluster of one's own; blocks until it accepts connections. Panics
    /// with the install hint when there is no PostgreSQL (a test never skips silently).
    pub fn start(options: ClusterOptions) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}{}-{}",
            postmaster::DIR_PREFIX,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match Self::try_start(&name, options, true) {
            Ok(cluster) => cluster,
            Err(e) => panic!("no PostgreSQL cluster for the test: {e}\n{}", super::HINT),
        }
    }

    /// The shared cluster of [`super::database`]: `<temp>/wam-pg-<pid>`, fast, no TLS.
    pub(crate) fn start_shared() -> Result<Self, String> {
        let name = format!("{}{}", postmaster::DIR_PREFIX, std::process::id());
        Self::try_start(&name, ClusterOptions::default(), false)
    }

    fn try_start(name: &str, options: ClusterOptions, own_dir: bool) -> Result<Self, String> {
        let bin = postmaster::find_bindir().ok_or_else(|| {
            "no initdb and postgres found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)"
                .to_string()
        })?;
        let temp = std::env::temp_dir();
        postmaster::remove_stale(&temp);
        let dir = temp.join(name);
        let owner = postmaster::unprivileged_owner()?;
        postmaster::make_dir(&dir, owner)?;
        let launch = Launch {
            bin,
            data: dir.join("data"),
            dir,
            port: postmaster::free_port()?,
            owner,
            durable: options.durable,
            ssl: options.ssl,
            // The shared cluster stays on its socket alone, as it always was.
            tcp: own_dir,
        };
        let admin_url = format!(
            "postgres://postgres@localhost:{}/postgres?host={}",
            launch.port,
            launch.dir.display()
        );
        let cluster = Self {
            launch,
            options,
            admin_url,
            running: Mutex::new(None),
            own_dir,
        };
        postmaster::init(&cluster.launch)?;
        if options.ssl {
            postmaster::make_certificate(&cluster.launch.dir, owner)?;
        }
        cluster.run()?;
        Ok(cluster)
    }

    fn run(&self) -> Result<(), String> {
        let (pid, exited) = postmaster::run(&self.launch)?;
        let ready = postmaster::wait_ready(&self.launch, &exited);
        if let Ok(mut running) = self.running.lock() {
            *running = Some((pid, exited));
        }
        ready
    }

    /// The superuser's URL over the unix socket (trust authentication, no password).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The port: the socket's name and the TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.launch.port
    }

    pub fn options(&self) -> ClusterOptions {
        self.options
    }

    /// `<temp>/wam-pg-<pid>-<n>`: the socket, `data/`, `postgres.log`.
    pub fn dir(&self) -> &std::path::Path {
        &self.launch.dir
    }

    /// The running postmaster's pid; `None` while stopped.
    pub fn postmaster_pid(&self) -> Option<i32> {
        self.running.lock().ok()?.as_ref().map(|(pid, _)| *pid)
    }

    /// A new empty database on this cluster; panics when it cannot be made.
    pub async fn database(&self) -> TestDb {
        match create_database(&self.admin_url).await {
            Ok(db) => db,
            Err(e) => panic!("no database on the cluster: {e}"),
        }
    }

    /// The URL of `db` (a database of this cluster) over TCP to 127.0.0.1, with
    /// `sslmode=<sslmode>`: what a server connecting with TLS is given.
    pub fn tcp_url(&self, db: &TestDb, sslmode: &str) -> String {
        let name = super::database_name(&db.url);
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode={sslmode}",
            self.launch.port
        )
    }

    /// Fast shutdown (clients disconnected, open transactions rolled back) and waits until
    /// the postmaster is gone. Stopping a stopped cluster does nothing.
    pub fn stop(&self) {
        let Some((pid, exited)) = self.running.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        // SAFETY: kill has no memory preconditions; the pid is our child, not yet reaped
        // while `exited` is empty (the keeper thread reaps it).
        if exited.lock().is_ok_and(|e| e.is_none()) {
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        if !postmaster::wait_exited(&exited, STOP_WAIT) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            postmaster::wait_exited(&exited, STOP_WAIT);
            panic!(
                "postgres {pid} did not stop within {STOP_WAIT:?}; its log:\n{}",
                postmaster::log_tail(&self.launch.dir)
            );
        }
    }

    /// Starts the stopped cluster again: the same data, the same port, ready when it returns.
    pub fn start_again(&self) {
        self.stop();
        if let Err(e) = self.run() {
            panic!("the cluster did not start again: {e}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let running = self.running.get_mut().ok().and_then(|r| r.take());
        if let Some((pid, exited)) = running {
            if exited.lock().is_ok_and(|e| e.is_none()) {
                // SAFETY: kill has no memory preconditions; our unreaped child.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            // No panic in a drop: a postmaster that will not stop still dies with the process.
            postmaster::wait_exited(&exited, STOP_WAIT);
        }
        forget_released(&self.admin_url);
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.launch.dir);
        }
    }
}
