//! The harness that process-level tests share: start the real `vetric` binary with real
//! arguments, wait until it answers `/health/live`, read what it prints, kill it (SIGKILL or
//! SIGTERM) and start it again. Fault tests (RELIABILITY.md) grow on this.
//!
//! Everything here is bounded in time: a wait that does not succeed within its limit fails the
//! test with what the process printed, instead of hanging CI.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A free port on loopback, for a process about to bind it.
///
/// There is a small window in which another process could take it; tests accept that.
pub fn free_local_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local addr of a bound listener")
}

/// One running `vetric` process and everything it printed so far.
pub struct VetricProcess {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl VetricProcess {
    /// Starts `binary` with `args` and `env` (added to a cleaned environment: no proxies, and
    /// no inherited `VETRIC_*` variables).
    pub fn spawn(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // `vetric` reads every `VETRIC_*` variable as configuration and refuses unknown ones,
        // so a test's own knobs (`VETRIC_TEST_PG_URL`, `VETRIC_R2_MESSAGES`, …) must not leak
        // into the process under test; what it should see is passed in `env`.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("VETRIC_")) {
                cmd.env_remove(&key);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect_lines(out, stdout.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect_lines(err, stderr.clone());
        }
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout buffer lock").clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr buffer lock").clone()
    }

    /// Everything printed so far, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout_lines().join("\n"),
            self.stderr_lines().join("\n")
        )
    }

    /// Waits until a stdout line satisfies `pred`, and returns it.
    pub async fn wait_for_stdout(
        &mut self,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(line) = self.stdout_lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "vetric exited ({status}) before printing the expected line\n{}",
                    self.transcript()
                );
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no matching stdout line within {limit:?}\n{}",
                    self.transcript()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `GET {base}/health/live` answers 200.
    pub async fn wait_live(&mut self, base: &str, limit: Duration) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .expect("http client");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(r) = client.get(format!("{base}/health/live")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "vetric exited ({status}) before answering /health/live\n{}",
                    self.transcript()
                );
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{base}/health/live did not answer within {limit:?}\n{}",
                    self.transcript()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the process gets no chance to clean up, as in a crash or an OOM kill.
    pub async fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.start_kill();
        self.child.wait().await.expect("wait for killed child")
    }

    /// SIGTERM, then wait up to `limit` for the exit.
    pub async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        self.wait_exit(limit).await
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for child"),
            Err(_) => panic!(
                "vetric did not exit within {limit:?}\n{}",
                self.transcript()
            ),
        }
    }
}

fn collect_lines<R>(reader: R, into: Arc<Mutex<Vec<String>>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut buf) = into.lock() {
                buf.push(line);
            }
        }
    });
}

/// A scratch directory that lives as long as the test.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temp dir")
}
