//! `redtrace data list | pull | info` against a mirror on 127.0.0.1 serving ../shared/data:
//! files land verified by their pinned SHA-256, nothing is fetched twice, a corrupted file is
//! refused without touching the data directory, and a run on a missing data set says what to
//! pull.

use redtrace_testkit::FileServer;

async fn redtrace(args: &[&str], cache: &std::path::Path) -> (bool, String, String) {
    let output = crate::util::command(args, &[])
        .env("XDG_CACHE_HOME", cache)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_verifies_caches_and_refuses_corrupt_files() {
    let Some(data) = redtrace_testkit::shared_data_or_skip("data pull") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    // The mirror serves the shared data, plus a file of ours where the official MITRE prompts
    // go (the shared data lacks them): its git blob id is not the pinned one.
    let root = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "cyberseceval" {
            std::os::unix::fs::symlink(entry.path(), root.path().join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir(root.path().join("cyberseceval")).unwrap();
    for entry in std::fs::read_dir(data.join("cyberseceval")).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(
            entry.path(),
            root.path().join("cyberseceval").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::write(
        root.path().join(redtrace_datasets::MITRE_FILE),
        r#"[{"mutated_prompt": "not the official file", "mitre_category": "Discovery"}]"#,
    )
    .unwrap();
    let mirror = FileServer::start(
        root.path().to_owned(),
        vec!["jailbreakbench_jbb/harmful-behaviors.csv".into()],
    )
    .await;

    let (ok, list, _) = redtrace(&["data", "list"], cache.path()).await;
    assert!(
        ok && list.contains("cyberseceval") && list.contains("16/16 files downloadable"),
        "{list}"
    );

    // A run before the pull says what to pull.
    let (ok, _, stderr) = redtrace(
        &[
            "run",
            "--model",
            "m@http://127.0.0.1:9/v1",
            "--bench",
            "xstest",
            "--data-dir",
        ]
        .into_iter()
        .chain([cache.path().join("empty").to_str().unwrap()])
        .collect::<Vec<_>>(),
        cache.path(),
    )
    .await;
    assert!(
        !ok && stderr.contains("redtrace data pull xstest"),
        "{stderr}"
    );

    let (ok, out, stderr) = redtrace(
        &["data", "pull", "xstest", "--mirror", &mirror.url()],
        cache.path(),
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(out.contains("xstest: 18 files downloaded"), "{out}");
    // CyberSecEval: the method files and prompts come; the MITRE file, checked against its git
    // blob id, is refused and nothing of it is left.
    let (ok, _, stderr) = redtrace(
        &["data", "pull", "cyberseceval", "--mirror", &mirror.url()],
        cache.path(),
    )
    .await;
    assert!(
        !ok && stderr.contains("is not the pinned da9bca1fae21ebe55eead0af9b1ce9a9cfdf3514"),
        "{stderr}"
    );
    let target = cache.path().join("redtrace/data");
    assert!(!target.join(redtrace_datasets::MITRE_FILE).exists());
    assert!(target
        .join("cyberseceval/method/mitre_benchmark.py")
        .is_file());
    for file in [
        "xstest/xstest_prompts.csv",
        "cyberseceval/prompt_injection.json",
    ] {
        assert_eq!(
            std::fs::read(target.join(file)).unwrap(),
            std::fs::read(data.join(file)).unwrap()
        );
    }
    let served = mirror.requests();
    assert_eq!(served, 18 + 16);

    // Nothing is fetched twice.
    let (ok, out, _) = redtrace(
        &["data", "pull", "xstest", "--mirror", &mirror.url()],
        cache.path(),
    )
    .await;
    assert!(
        ok && out.contains("0 files downloaded") && out.contains("18 already present"),
        "{out}"
    );
    assert_eq!(mirror.requests(), served);

    // The default data directory is where runs look: the pulled benchmark loads.
    let (_, _, stderr) = redtrace(
        &[
            "run",
            "--model",
            "m@http://127.0.0.1:9/v1",
            "--bench",
            "xstest",
            "--limit",
            "1",
            "--retries",
            "0",
            "--quiet",
            "--db",
            cache.path().join("r.db").to_str().unwrap(),
        ],
        cache.path(),
    )
    .await;
    assert!(!stderr.contains("data directory"), "{stderr}");

    // A file whose bytes do not match the pinned hash is refused and nothing is left behind.
    let (ok, _, stderr) = redtrace(
        &["data", "pull", "jbb", "--mirror", &mirror.url()],
        cache.path(),
    )
    .await;
    assert!(!ok && stderr.contains("is not the pinned"), "{stderr}");
    assert!(!target
        .join("jailbreakbench_jbb/harmful-behaviors.csv")
        .exists());
    assert!(!target
        .join("jailbreakbench_jbb/harmful-behaviors.csv.part")
        .exists());

    let (ok, info, _) = redtrace(&["data", "info", "jbb"], cache.path()).await;
    assert!(
        ok && info.contains("harmful-behaviors.csv") && info.contains("missing"),
        "{info}"
    );
    assert!(
        info.contains("not downloadable by redtrace"),
        "the derived UTF-8 copy: {info}"
    );
    std::fs::write(target.join("xstest/xstest_prompts.csv"), "edited").unwrap();
    let (_, info, _) = redtrace(&["data", "info", "xstest"], cache.path()).await;
    assert!(info.contains("DIFFERENT"), "{info}");
    // A source that cannot be reached leaves no folder behind, not even the default one.
    let empty = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = redtrace(
        &["data", "pull", "xstest", "--mirror", "http://127.0.0.1:9"],
        empty.path(),
    )
    .await;
    assert!(!ok && stderr.contains("127.0.0.1:9"), "{stderr}");
    assert!(!empty.path().join("redtrace").exists());
    let (ok, _, stderr) = redtrace(&["data", "pull", "nope"], cache.path()).await;
    assert!(
        !ok && stderr.contains("unknown data set 'nope'"),
        "{stderr}"
    );
}

/// Where a benchmark was published and where `data pull` fetches its pinned copy are told
/// apart, and the same everywhere: `data info` and a run that misses the file name the same
/// source as the pull (regression: `data info harmbench` named the authors' repository while
/// the pull fetched a mirror).
#[tokio::test(flavor = "multi_thread")]
async fn data_info_and_errors_name_the_source_the_pull_uses() {
    let home = tempfile::tempdir().unwrap();
    let mirror = "github.com/allenai/wildteaming at 0a94b909079c";
    let (ok, info, _) = redtrace(&["data", "info", "harmbench"], home.path()).await;
    assert!(
        ok && info
            .contains("benchmark harmbench: published at github.com/centerforaisafety/HarmBench")
            && info.contains(&format!("pulled from {mirror}")),
        "{info}"
    );
    let empty = home.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (ok, _, stderr) = redtrace(
        &[
            "run",
            "--model",
            "m@http://127.0.0.1:9/v1",
            "--bench",
            "harmbench",
            "--data-dir",
            empty.to_str().unwrap(),
        ],
        home.path(),
    )
    .await;
    assert!(
        !ok && stderr.contains("published at github.com/centerforaisafety/HarmBench")
            && stderr.contains(&format!(
                "`redtrace data pull harmbench`, which fetches a pinned copy from {mirror}"
            )),
        "{stderr}"
    );
}
