//! The daemon binary as a user runs it: several sockets, a bad frontend on
//! one of them, a clean shutdown on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use vhost::VhostBackend;
use vhost::vhost_user::Frontend;

const BIN: &str = env!("CARGO_BIN_EXE_virtio-vhost-user");

fn workdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vvu-daemon-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for_socket(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn several_sockets_a_bad_frontend_and_sigterm() {
    let dir = workdir("multi");
    let base = dir.join("rng.sock");
    let mut child = Command::new(BIN)
        .args(["--socket"])
        .arg(&base)
        .args(["--socket-count", "2", "rng"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (s0, s1) = (dir.join("rng.sock0"), dir.join("rng.sock1"));
    wait_for_socket(&s0, &mut child);
    wait_for_socket(&s1, &mut child);

    // Socket 0: an unknown request asking for a reply gets a NACK and its
    // connection is closed.
    let mut bad = UnixStream::connect(&s0).unwrap();
    let mut message = Vec::new();
    for word in [9999u32, 0x1 | 0x8, 0] {
        message.extend_from_slice(&word.to_le_bytes());
    }
    bad.write_all(&message).unwrap();
    let mut reply = Vec::new();
    bad.read_to_end(&mut reply).unwrap();
    assert_eq!(reply.len(), 20, "a negative REPLY_ACK, then close");
    assert_eq!(u64::from_le_bytes(reply[12..20].try_into().unwrap()), 1);

    // Socket 1 serves meanwhile, and socket 0 takes the next frontend.
    for path in [&s1, &s0] {
        let fe = Frontend::connect(path, 1).unwrap();
        fe.set_owner().unwrap();
        let features = fe.get_features().unwrap();
        assert_ne!(features & (1 << 32), 0, "VERSION_1 offered");
    }

    // SIGTERM: status 0, both sockets gone.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(exit.success(), "{exit}: {log}");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(!s0.exists() && !s1.exists(), "sockets left behind");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn one_writable_image_is_not_served_on_several_sockets() {
    let dir = workdir("blk");
    let image = dir.join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(dir.join("blk.sock"))
        .args(["--socket-count", "2", "block", "--file"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("one socket only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("blk.sock0").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
