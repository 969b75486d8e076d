//! A server whose log reader goes away (a stopped log collector, a closed terminal)
//! keeps serving: a log line that meets a broken pipe is dropped, never a panic
//! that ends the process or the connection that logged it.

mod common;

use common::served::{finish, Served};

#[test]
fn serve_keeps_serving_after_its_log_pipe_closes() {
    let mut served = Served::start(&[]);
    served.close_log();
    // Each connection logs at least its summary line, into the broken pipe; the
    // second and third would fail if the first had killed the process or panicked
    // a worker thread mid-write.
    for round in 0..3 {
        let out = served.connect(&["hello"]).output().unwrap();
        assert!(
            out.status.success(),
            "connection {round} after the log closed: {}",
            common::text(&out.stderr)
        );
        assert_eq!(common::text(&out.stdout), "HELLO\n");
    }
    // A reload logs on the main thread (what used to end the process with status 101).
    let status = std::process::Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = served.connect(&["after reload"]).output().unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert_eq!(common::text(&out.stdout), "AFTER RELOAD\n");
    served.terminate();
    let child = std::mem::replace(
        &mut served.child,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let output = finish(child, "serve after SIGTERM");
    assert_eq!(
        output.status.code(),
        Some(0),
        "serve's exit status on SIGTERM"
    );
}
