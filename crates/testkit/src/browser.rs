//! A headless Chromium driven over WebDriver: `chromedriver` started here on a free port of
//! 127.0.0.1 as a child in a process group of its own, a session opened on it, and helpers
//! that poll the page (every wait ends as soon as its condition holds) and write screenshots
//! to `target/dashboard-screenshots/<NN>-<step>.png` for people to look at.
//!
//! chromedriver and the Chromium it starts are killed when the [`Browser`] is dropped, a
//! failing test's panic included, and chromedriver dies with the test process
//! (`PR_SET_PDEATHSIG`). Where no browser or driver can be found, [`Browser::start`] panics
//! with the packages to install: a browser test never skips.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long chromedriver and the browser session may take to come up on a loaded machine.
const START_WAIT: Duration = Duration::from_secs(60);
/// Starts of chromedriver tried, each on a new free port (another process may take the port
/// between the probe and the bind).
const START_TRIES: usize = 3;

/// The packages that provide what the test needs, named in every hint.
const PACKAGES: &str = "Debian's `chromium` and `chromium-driver` packages";

/// A Chromium session and the chromedriver behind it.
pub struct Browser {
    client: Client,
    // Dropped after the client: kills chromedriver and its browser.
    driver: Driver,
    shots: PathBuf,
    shot_no: AtomicU32,
}

/// The chromedriver process and the browser profile folder; both go on drop.
struct Driver {
    child: Option<Child>,
    /// The browser's `--user-data-dir`: unique to this driver, so the browser processes it
    /// started can be told apart from any other on the machine.
    profile: tempfile::TempDir,
    log: PathBuf,
}

impl Driver {
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: signals to the process group this driver was started in (its id is the
            // driver's pid); the browser's processes are in it too.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        kill_by_profile(self.profile.path());
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "==== chromedriver, last lines of {} ====\n{}",
                self.log.display(),
                tail.join("\n")
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Kills every process whose command line names this browser profile: Chromium's helper
/// processes may leave chromedriver's process group, and none may outlive the test.
fn kill_by_profile(profile: &Path) {
    let needle = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let mut cmdline = Vec::new();
        if std::fs::File::open(entry.path().join("cmdline"))
            .and_then(|mut f| f.read_to_end(&mut cmdline))
            .is_err()
        {
            continue;
        }
        let has = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes());
        if has {
            // SAFETY: a plain signal to a browser process this harness started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The first of `candidates` that exists as a file (absolute) or on the PATH; `env` first
/// when it is set.
fn find_program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env)
        && !p.is_empty()
    {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for c in candidates {
        let c = Path::new(c);
        if c.is_absolute() {
            if c.is_file() {
                return Some(c.to_path_buf());
            }
            continue;
        }
        for dir in std::env::split_paths(&path) {
            let p = dir.join(c);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Why no browser can be had, with what to install; in CI the same, said as a failure of
/// the run's setup.
fn missing(what: &str) -> ! {
    let ci = std::env::var_os("CI").is_some();
    if ci {
        panic!(
            "the browser test cannot run: {what}. CI must provide {PACKAGES} \
             (scripts/test.sh installs them with apt-get when missing)"
        );
    }
    panic!(
        "the browser test needs Chromium and chromedriver: {what}. Install {PACKAGES} \
         (`apt-get install chromium chromium-driver`, or run `bash scripts/test.sh`, which \
         installs them when missing), or name the programs in WAM_CHROMIUM and WAM_CHROMEDRIVER"
    );
}

/// The workspace's `target/dashboard-screenshots`, emptied of an earlier run's pictures.
fn screenshot_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target").join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("target/dashboard-screenshots");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "png") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    dir.canonicalize().unwrap_or(dir)
}

/// Whether something answers HTTP on the port with chromedriver's `/status` saying ready.
fn driver_ready(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    // HTTP/1.1: chromedriver refuses 1.0.
    let req =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"ready\":true") || body.contains("\"ready\": true")
}

/// Starts chromedriver on a free port and waits until it is ready; the port.
fn start_driver(program: &Path, d: &mut Driver) -> u16 {
    let mut last = String::new();
    for _ in 0..START_TRIES {
        let port = crate::cluster::free_port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&d.log)
            .expect("chromedriver's log file");
        let err = out.try_clone().expect("chromedriver's log file");
        let mut cmd = Command::new(program);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // Its own group, so the browser it starts can be killed with it.
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(c) => d.child = Some(c),
            Err(e) => missing(&format!("{} could not start: {e}", program.display())),
        }
        let deadline = Instant::now() + START_WAIT;
        loop {
            if driver_ready(port) {
                return port;
            }
            let exited = d
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                last = std::fs::read_to_string(&d.log).unwrap_or_default();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        d.kill();
    }
    panic!("chromedriver did not start in {START_TRIES} tries:\n{last}");
}

impl Browser {
    /// A headless Chromium whose preferred language is `lang` (`navigator.languages` starts
    /// with it), with a 1280×900 window.
    pub async fn start(lang: &str) -> Browser {
        let Some(driver) = find_program(
            "WAM_CHROMEDRIVER",
            &["chromedriver", "/usr/bin/chromedriver"],
        ) else {
            missing("no `chromedriver` on the PATH");
        };
        let Some(chromium) = find_program(
            "WAM_CHROMIUM",
            &[
                "chromium",
                "chromium-browser",
                "/usr/bin/chromium",
                "google-chrome",
            ],
        ) else {
            missing("no `chromium` on the PATH");
        };
        let profile = tempfile::Builder::new()
            .prefix("wam-chromium-")
            .tempdir()
            .expect("a browser profile folder");
        let log = std::env::temp_dir().join(format!(
            "wam-chromedriver-{}-{}.log",
            std::process::id(),
            crate::cluster::free_port()
        ));
        let mut driver_proc = Driver {
            child: None,
            profile,
            log,
        };
        let port = start_driver(&driver, &mut driver_proc);
        let driver = driver_proc;

        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    "--no-first-run",
                    "--no-default-browser-check",
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", driver.profile.path().display()),
                ],
                "prefs": { "intl.accept_languages": lang },
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://127.0.0.1:{port}");
        let client = match tokio::time::timeout(
            START_WAIT,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&url),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                drop(driver);
                panic!(
                    "no browser session from chromedriver ({}): {e}",
                    chromium.display()
                )
            }
            Err(_) => {
                drop(driver);
                panic!("no browser session from chromedriver within {START_WAIT:?}")
            }
        };
        Browser {
            client,
            driver,
            shots: screenshot_dir(),
            shot_no: AtomicU32::new(1),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the browser session, then chromedriver.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(20), self.client.clone().close()).await;
        self.driver.kill();
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Writes `target/dashboard-screenshots/<NN>-<step>.png`; its path.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let n = self.shot_no.fetch_add(1, Ordering::Relaxed);
        let path = self.shots.join(format!("{n:02}-{step}.png"));
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {step}: {e}"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Scrolls the element `css` into the middle of the window, then [`Browser::screenshot`]:
    /// for what lies below the fold.
    pub async fn screenshot_at(&self, css: &str, step: &str) -> PathBuf {
        self.js(
            "const e = document.querySelector(arguments[0]); \
             if (e) e.scrollIntoView({block: 'center'}); return true;",
            vec![json!(css)],
        )
        .await;
        self.screenshot(step).await
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; its result.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` every 100 ms until it returns something other than `null`, `false`,
    /// `""` or `undefined`, `within` at most; that value. Past the deadline: a screenshot
    /// named after `what`, then a panic with the page's visible text.
    pub async fn wait_js(
        &self,
        within: Duration,
        what: &str,
        script: &str,
        args: Vec<Value>,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = match self.client.execute(script, args.clone()).await {
                Ok(v) => v,
                Err(e) => json!({"__script_error": e.to_string()}),
            };
            let done = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Object(o) => !o.contains_key("__script_error"),
                _ => true,
            };
            if done {
                return v;
            }
            if Instant::now() > deadline {
                let slug: String = what
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .take(60)
                    .collect();
                let shot = self.screenshot(&format!("FAILED-{slug}")).await;
                let text = self
                    .client
                    .execute(
                        "return document.body ? document.body.innerText.slice(0, 3000) : ''",
                        vec![],
                    )
                    .await
                    .unwrap_or(Value::Null);
                panic!(
                    "never {what} (within {within:?}); last result {v}; screenshot {}; page text:\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element `css` exists and is displayed.
    pub async fn wait_visible(&self, within: Duration, css: &str) {
        self.wait_js(
            within,
            &format!("{css} shown"),
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.getClientRects().length > 0 \
                    && getComputedStyle(e).visibility !== 'hidden';",
            vec![json!(css)],
        )
        .await;
    }

    /// The element `css`, once it is shown.
    async fn shown(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_visible(Duration::from_secs(30), css).await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
    }

    /// Clicks the element `css` once it is shown.
    pub async fn click(&self, css: &str) {
        let e = self.shown(css).await;
        e.click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Clears the input `css` and types `text` into it, as a person would.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.shown(css).await;
        e.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Picks the option `value` of the `<select>` `css`, as a person would.
    pub async fn select(&self, css: &str, value: &str) {
        let e = self.shown(css).await;
        e.select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// The text of the element `css` (`innerText`, digits in ASCII), or `None` when absent.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![json!(css)],
            )
            .await;
        v.as_str().map(ascii_digits)
    }
}

/// `text` with Arabic-Indic and Eastern Arabic-Indic digits written as ASCII digits, so a
/// number an Arabic page shows compares with the API's.
pub fn ascii_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ascii_digits;

    #[test]
    fn arabic_indic_digits_read_as_ascii() {
        assert_eq!(ascii_digits("١٢٣ / ۴۵"), "123 / 45");
        assert_eq!(ascii_digits("page 3/7"), "page 3/7");
    }
}
