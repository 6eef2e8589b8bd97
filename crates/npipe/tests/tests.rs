//! npipe's integration tests: one binary, behaviour through the public API across
//! real threads and processes.

mod util;

mod blocking;
#[cfg(all(unix, feature = "tokio"))]
mod hardening;
#[cfg(all(target_os = "linux", feature = "tokio"))]
mod memory;
#[cfg(all(unix, feature = "tokio"))]
mod paths;
#[cfg(feature = "tokio")]
mod server;
#[cfg(feature = "tokio")]
mod tokio_api;
#[cfg(windows)]
mod windows;

/// Entry point of child processes (see `util::drive`): does nothing in a normal run.
#[test]
fn child_role() {
    let Some((role, args)) = util::drive::role() else {
        return;
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = match role.as_str() {
        "echo-server" => blocking::roles::echo_server(&args),
        "hold-name" => blocking::roles::hold_name(&args),
        "call" => blocking::roles::call(&args),
        "connect-kind" => blocking::roles::connect_kind(&args),
        "address" => blocking::roles::address(&args),
        #[cfg(feature = "tokio")]
        "server-clients" => server::roles::clients(&args),
        #[cfg(feature = "tokio")]
        "server-half-frame" => server::roles::half_frame(&args),
        #[cfg(feature = "tokio")]
        "server-call" => server::roles::call(&args),
        #[cfg(feature = "tokio")]
        "server-oversize-memory" => server::roles::oversize_memory(&args),
        #[cfg(feature = "tokio")]
        "server-fd-leak" => server::roles::fd_leak(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-server" => hardening::roles::server(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-no-read" => hardening::roles::no_read(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-bind" => hardening::roles::bind(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-squat" => hardening::roles::squat(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-forge-refusal" => hardening::roles::forge_refusal(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-expect-root" => hardening::roles::expect_root(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-logs" => hardening::roles::logs(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-connect" => hardening::roles::connect(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-write-file" => hardening::roles::write_file(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-swap" => hardening::roles::swap(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-dir-race" => hardening::roles::dir_race(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-plant" => hardening::roles::plant(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-refused" => hardening::roles::refused(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-plant-spin" => hardening::roles::plant_spin(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "hard-flock" => hardening::roles::flock(&args),
        #[cfg(all(target_os = "linux", feature = "tokio"))]
        "mem-server" => memory::roles::server(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "activated" => paths::roles::activated(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "activated-handback" => paths::roles::handback(&args),
        #[cfg(all(unix, feature = "tokio"))]
        "path-call" => paths::roles::call(&args),
        other => {
            eprintln!("unknown test role {other:?}");
            100
        }
    };
    std::process::exit(code);
}
