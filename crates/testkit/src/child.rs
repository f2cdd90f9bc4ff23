//! The server binary as a child process: its stderr (the logs) collected as it goes, and the
//! port it announces. Shared by the test binaries that run the real executable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Spawns `cmd` with stderr piped and waits (20 s at most) for its "listening on" line.
pub fn spawn_and_wait_port(cmd: &mut Command) -> (Child, Arc<Mutex<String>>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let logs = Arc::new(Mutex::new(String::new()));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Kept before the port is told, so whoever waits on the port sees the line.
            {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let port = rest.split([':', ' ']).nth(1).unwrap_or("").to_string();
                let _ = port_tx.send(port);
            }
        }
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("server did not start: {}", logs.lock().unwrap()));
    (child, logs, port)
}
