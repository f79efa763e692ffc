//! A real `redis-server` for the tests of the Redis state backend: started on a free
//! loopback port with its own temporary directory and no persistence, stopped (killed)
//! when dropped. The binary is `$ARCLLM_REDIS_SERVER`, else `redis-server` on the PATH;
//! without either, [`RedisServer::start`] prints why the test is skipped and returns `None`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that names the `redis-server` binary (`.ci/run` sets it).
pub const SERVER_ENV: &str = "ARCLLM_REDIS_SERVER";

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    binary: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server, or prints `SKIPPED: …` naming `test` and returns `None` when no
    /// binary is found.
    pub fn start(test: &str) -> Option<RedisServer> {
        let Some(binary) = find_binary() else {
            eprintln!(
                "SKIPPED: {test}: no redis-server (set {SERVER_ENV} or put redis-server on the PATH; .ci/run installs it)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let port = free_port();
        let mut server = RedisServer { child: None, binary, port, dir };
        server.spawn();
        Some(server)
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (as a crash would: no shutdown handshake).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)); its data is
    /// gone.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SERVER_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join("redis-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}
