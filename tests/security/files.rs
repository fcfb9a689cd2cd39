//! The API reads no file and copies no directory outside the configured roots, never echoes a
//! file's content, writes nothing through a symlink, and keeps its data private.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::{Options, Up, Upstream, files_under, gateway_config, unique};

#[tokio::test]
async fn files_and_directories_outside_the_roots_are_refused_without_a_look() {
    let planted = unique("sk-planted-");
    let up =
        Up::start(Options { env: vec![("OPENAI_API_KEY".into(), planted.clone())], ..Options::default() });
    std::fs::create_dir_all(up.dir.path().join("proj")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", up.dir.path().join("proj/etc-link")).expect("symlink");
    std::os::unix::fs::symlink("/proc/self/environ", up.dir.path().join("proj/env.toml")).expect("symlink");
    for body in [
        json!({"pipeline_path": "/proc/self/environ", "dry_run": true}),
        json!({"pipeline_path": "/etc/shadow", "dry_run": true}),
        json!({"pipeline_path": "/etc/passwd"}),
        json!({"pipeline_path": "../../../../proc/self/environ", "dry_run": true}),
        json!({"pipeline_path": up.dir.path().join("proj/env.toml"), "dry_run": true}),
        json!({"pipeline": "name = \"x\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n", "workdir": "/etc"}),
        json!({"pipeline": "name = \"x\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n", "workdir": "/proc/self"}),
        json!({"pipeline": "name = \"x\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n", "workdir": up.dir.path().join("proj/etc-link")}),
    ] {
        let res = up.start_run(None, body.clone()).await;
        let status = res.status();
        let text = res.text().await.expect("body");
        assert_eq!(status, 403, "{body}: {text}");
        assert!(text.contains("path_not_allowed"), "{text}");
        assert!(!text.contains(&planted) && !text.contains("root:"), "no content: {text}");
    }
    assert!(!up.stderr().contains(&planted), "nor in the log");
}

#[tokio::test]
async fn a_file_inside_the_roots_that_is_no_pipeline_is_not_quoted() {
    let up = Up::start(Options::default());
    let secret = unique("hunter2-");
    for (name, text) in [
        ("notes.txt", format!("the password is {secret}\n")),
        ("creds.toml", format!("[default]\naws_secret_access_key = {secret}\n")),
        ("keys.toml", format!("{secret} = 1\n")),
        (
            "almost.toml",
            format!("name = \"x\"\n[[phase]]\nname = \"{secret}!\"\nkind = \"command\"\nrun = [\"true\"]\n"),
        ),
    ] {
        let path = up.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let res = up.start_run(None, json!({"pipeline_path": path, "dry_run": true})).await;
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 400, "{name}: {body}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(!detail.contains(&secret), "{name}: {detail}");
        assert!(detail.contains("line "), "it says where: {detail}");
    }
}

/// A pipeline whose first phase leaves `ln -s TARGET out` and whose LLM phase then writes `output`.
fn symlink_then_llm(target: &str, link: &str, output: &str) -> String {
    format!(
        "name = \"escape\"\n[[phase]]\nname = \"plant\"\nkind = \"command\"\nrun = [\"ln\", \"-s\", {target:?}, {link:?}]\n\
         [[phase]]\nname = \"write\"\nkind = \"llm\"\nmodel = \"smart\"\nprompt = \"say hi\"\noutput = {output:?}\nretries = 0\n"
    )
}

#[tokio::test]
async fn an_llm_output_is_never_written_through_a_symlink() {
    let upstream = Upstream::openai_answering("written through the link");
    let up = Up::start(Options { config: gateway_config(&upstream.url, None), ..Options::default() });
    std::fs::create_dir_all(up.dir.path().join("work")).expect("mkdir");
    let outside = tempfile::tempdir().expect("outside");
    let dir = outside.path().to_str().expect("utf-8").to_owned();
    for (target, link, output) in [
        (dir.clone(), "out", "out/summary.json"),
        (format!("{dir}/dangling.json"), "answer.json", "answer.json"),
        (format!("{dir}/deep"), "d", "d/x/y.json"),
    ] {
        let run = up.run(None, &symlink_then_llm(&target, link, output)).await;
        assert_ne!(run["status"], "succeeded", "{output}: {run:#}");
        assert_eq!(run["failed"]["name"], "write", "{run:#}");
        let attempt = &run["failed"]["attempts"][0];
        assert!(
            attempt["outcome"]["output"].as_str().is_some_and(|o| o.contains("symbolic link")),
            "{attempt:#}"
        );
    }
    assert!(std::fs::read_dir(outside.path()).expect("list").next().is_none(), "nothing was written outside");
    assert!(upstream.requests() >= 3, "the LLM phases did run");
}

#[tokio::test]
async fn the_data_directory_is_private() {
    let upstream = Upstream::openai_answering("{\"ok\": true}");
    let up = Up::start(Options { config: gateway_config(&upstream.url, None), ..Options::default() });
    // a project with world-readable and group-readable files, and an executable
    let work = up.dir.path().join("work");
    std::fs::create_dir_all(work.join("src")).expect("mkdir");
    for (rel, mode) in [("src/app.py", 0o644), ("secret.env", 0o640), ("run.sh", 0o755)] {
        std::fs::write(work.join(rel), "x = 1\n").expect("write");
        std::fs::set_permissions(work.join(rel), std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let pipeline = "name = \"p\"\n[[phase]]\nname = \"build\"\nkind = \"command\"\nshell = true\nrun = \"mkdir -p out && echo built > out/result.txt\"\n\
                    [[phase]]\nname = \"sum\"\nkind = \"llm\"\nmodel = \"smart\"\nprompt = \"sum up\"\noutput = \"summary.json\"\n";
    let run = up.run(None, pipeline).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let data = up.data();
    let mut seen = 0;
    for p in std::iter::once(data.clone()).chain(files_under(&data)) {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", p.display(), mode & 0o777);
        seen += 1;
    }
    assert!(seen > 20, "only {seen} entries");
    let blobs = data.join("orchestrator/blobs");
    assert!(files_under(&blobs).iter().any(|p| p.is_file()), "blobs were written and checked");
    // the user's own project keeps its modes
    assert_eq!(std::fs::metadata(work.join("src/app.py")).expect("stat").permissions().mode() & 0o777, 0o644);
}
