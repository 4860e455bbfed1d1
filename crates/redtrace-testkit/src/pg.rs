//! Throwaway PostgreSQL databases for tests: each call gives a fresh, empty database on one
//! server per test process. The server is `REDTRACE_TEST_PG` (a URL whose user may create
//! databases; the test command starts one and sets it), or else one started here from
//! Debian's `postgresql` binaries (`initdb` into a temporary folder, as the unprivileged
//! `postgres` user when run as root, listening only on a Unix socket in that folder), which a
//! watchdog stops and removes when the test process ends. Where neither is possible the test
//! is skipped with a message, except under CI (`CI` set), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

static SERVER: OnceLock<Option<String>> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A URL of a fresh, empty database, or `None` (the caller skips) where there is no server to
/// be had here and this is not CI.
pub fn postgres_db() -> Option<String> {
    let server = SERVER.get_or_init(|| match std::env::var("REDTRACE_TEST_PG") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => match start_server() {
            Ok(url) => Some(url),
            Err(why) => {
                if std::env::var_os("CI").is_some() {
                    panic!("no PostgreSQL for the tests under CI: {why}");
                }
                eprintln!("skipping: no PostgreSQL here ({why}); set REDTRACE_TEST_PG");
                None
            }
        },
    });
    let server = server.as_ref()?;
    let name = format!(
        "redtrace_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = server.clone();
    let create = name.clone();
    let created = std::thread::spawn(move || -> Result<(), String> {
        let mut client =
            postgres::Client::connect(&admin, postgres::NoTls).map_err(|e| e.to_string())?;
        client
            .batch_execute(&format!("CREATE DATABASE {create}"))
            .map_err(|e| e.to_string())
    })
    .join()
    .expect("creating the test database");
    if let Err(why) = created {
        panic!("could not create a test database on REDTRACE_TEST_PG: {why}");
    }
    Some(with_database(server, &name))
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    // postgres://user@host[:port]/db: the database is what follows the first '/' after '//'.
    let authority_end = head[head.find("//").map_or(0, |i| i + 2)..]
        .find('/')
        .map(|i| i + head.find("//").map_or(0, |j| j + 2));
    let base = match authority_end {
        Some(end) => &head[..end],
        None => head,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// The folder of Debian's PostgreSQL binaries (the newest), or the one `initdb` is in.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()))
}

fn as_postgres_user(program: &Path, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.arg("-u").arg("postgres").arg("--").arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_server() -> Result<String, String> {
    let bin = binaries().ok_or("PostgreSQL's initdb was not found (apt-get install postgresql)")?;
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let folder = std::env::temp_dir().join(format!("redtrace-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    if root {
        let status = Command::new("chown")
            .arg("postgres:")
            .arg(&folder)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("could not give the temporary folder to the postgres user".into());
        }
    }
    let data = folder.join("data");
    let output = as_postgres_user(&bin.join("initdb"), root)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let port = 20000 + (std::process::id() % 20000);
    let options = format!(
        "-k {} -c listen_addresses='' -p {port} -c fsync=off -c max_connections=200",
        folder.display()
    );
    let output = as_postgres_user(&bin.join("pg_ctl"), root)
        .arg("-D")
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(folder.join("log"))
        .args(["-w", "start"])
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // The watchdog stops the server and removes its folder once this process is gone.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {prefix}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {folder}",
        pid = std::process::id(),
        prefix = if root { "runuser -u postgres -- " } else { "" },
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        folder = folder.display(),
    );
    Command::new("sh")
        .args(["-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    Ok(format!(
        "postgres://postgres@localhost/postgres?host={}&port={port}",
        folder.display()
    ))
}
