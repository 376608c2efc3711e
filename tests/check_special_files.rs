//! `hostguard check` on what is not a regular file, against the built binary: a FIFO named
//! `x.yaml`, a link to `/dev/zero`, a socket, a directory link to `/`, and pipes given
//! explicitly (`-f /dev/stdin`, a process substitution). Every run has a deadline
//! (`assert_cmd`'s timeout kills the binary), so a hang fails the test instead of stalling it.

use std::error::Error;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command as Std;
use std::time::Duration;

use assert_cmd::Command;

type TestResult = Result<(), Box<dyn Error>>;

const DEADLINE: Duration = Duration::from_secs(60);

const DENIED: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: chat, namespace: team-a}
spec:
  template:
    spec:
      containers:
        - name: app
          env:
            - {name: OPENAI_API_KEY, value: sk-test}
";

fn check(args: &[&str]) -> Result<(i32, String, String), Box<dyn Error>> {
    let out = Command::cargo_bin("hostguard")?
        .env_remove("HOSTGUARD_CLUSTER_PROVIDER")
        .arg("check")
        .args(args)
        .timeout(DEADLINE)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

fn mkfifo(path: &Path) -> TestResult {
    let status = Std::new("mkfifo").arg(path).status()?;
    assert!(status.success(), "mkfifo {}", path.display());
    Ok(())
}

#[test]
fn special_files_in_a_directory_are_skipped_with_a_note() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::write(root.join("app.yaml"), DENIED)?;
    mkfifo(&root.join("fifo.yaml"))?;
    symlink("/dev/zero", root.join("zero.yaml"))?;
    let _socket = UnixListener::bind(root.join("socket.yaml"))?;
    symlink(root.join("missing.yaml"), root.join("dangling.yaml"))?;
    let dir_arg = root.display().to_string();
    let (code, stdout, stderr) = check(&["-f", &dir_arg])?;
    assert_eq!(code, 1, "the Deployment is judged: {stdout}{stderr}");
    assert!(
        stdout.contains("app.yaml#0 Deployment team-a/chat: DENY"),
        "{stdout}"
    );
    for (name, why) in [
        ("fifo.yaml", "not a regular file (a FIFO)"),
        ("zero.yaml", "not a regular file (a character device)"),
        ("socket.yaml", "not a regular file (a socket)"),
        ("dangling.yaml", "a symbolic link to nothing"),
    ] {
        let note = format!(
            "hostguard check: note: {}: skipped: {why}",
            root.join(name).display()
        );
        assert!(stderr.contains(&note), "{note}\nnot in:\n{stderr}");
    }
    Ok(())
}

#[test]
fn directory_links_are_followed_only_inside_the_paths_given() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("base"))?;
    std::fs::write(root.join("base/app.yaml"), DENIED)?;
    // Out of the tree: `/` itself, and a sibling directory holding a manifest.
    symlink("/", root.join("slash"))?;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(
        outside.join("other.yaml"),
        DENIED.replace("chat", "outside"),
    )?;
    symlink(&outside, root.join("elsewhere"))?;
    // Inside the tree: followed, and a cycle back to the root ends.
    symlink(root.join("base"), root.join("overlay"))?;
    symlink(&root, root.join("base/loop"))?;
    let root_arg = root.display().to_string();
    let (code, stdout, stderr) = check(&["-f", &root_arg, "-o", "json"])?;
    assert_eq!(code, 1, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    let names: Vec<&str> = report["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        vec!["chat"],
        "base/app.yaml once, nothing from outside"
    );
    for link in ["slash", "elsewhere"] {
        let note = format!(
            "hostguard check: note: {}: skipped: a symbolic link to a directory outside the paths given, not followed",
            root.join(link).display()
        );
        assert!(stderr.contains(&note), "{note}\nnot in:\n{stderr}");
    }
    Ok(())
}

#[test]
fn a_file_link_is_followed_like_kubectl_follows_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root)?;
    let outside = dir.path().join("shared.yaml");
    std::fs::write(&outside, DENIED)?;
    symlink(&outside, root.join("app.yaml"))?;
    let (code, stdout, _) = check(&["-f", &root.display().to_string()])?;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("Deployment team-a/chat: DENY"), "{stdout}");
    Ok(())
}

#[test]
fn an_explicit_device_is_read_up_to_the_bound_and_refused() -> TestResult {
    let (code, stdout, stderr) = check(&["-f", "/dev/zero"])?;
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(
        stderr.trim(),
        "hostguard check: /dev/zero: larger than 67108864 bytes, the most hostguard reads from one file"
    );
    Ok(())
}

#[test]
fn an_endless_stdin_is_refused_at_the_bound() -> TestResult {
    // assert_cmd's stdin helpers read the input into memory first, and this one never ends:
    // std's Command with /dev/zero as stdin, waited for with a bounded deadline.
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("hostguard"))
        .args(["check", "-f", "-"])
        .stdin(std::fs::File::open("/dev/zero")?)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let started = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > DEADLINE {
            child.kill()?;
            panic!("hostguard check -f - kept reading /dev/zero");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)?.contains("<stdin>: larger than 67108864 bytes"));
    Ok(())
}

#[test]
fn an_explicit_fifo_is_read_as_the_stream_it_is() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("rendered.yaml");
    mkfifo(&fifo)?;
    let writer_path = fifo.clone();
    // The writer blocks in open() until hostguard opens the FIFO for reading.
    let writer = std::thread::spawn(move || std::fs::write(writer_path, DENIED));
    let (code, stdout, stderr) = check(&["-f", &fifo.display().to_string()])?;
    writer.join().map_err(|_| "writer panicked")??;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("Deployment team-a/chat: DENY"), "{stdout}");
    Ok(())
}

#[test]
fn process_substitution_and_dev_stdin_are_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, DENIED)?;
    let bin = assert_cmd::cargo::cargo_bin("hostguard");
    let script = format!(
        "{bin} check -f <(cat {file}) && exit 9; {bin} check -f /dev/stdin < {file}",
        bin = bin.display(),
        file = file.display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env_remove("HOSTGUARD_CLUSTER_PROVIDER")
        .timeout(DEADLINE)
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.matches("Deployment team-a/chat: DENY").count(),
        2,
        "{stdout}"
    );
    Ok(())
}
