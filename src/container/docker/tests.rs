//! Tests of the engine helpers: socket choice, image references, restart policies.

use super::run::restart_policy;
use super::*;

#[test]
fn runtime_picks_the_engine_socket_unless_docker_host_is_set() {
    use std::path::Path;
    let xdg = Some(Path::new("/run/user/1000"));
    assert_eq!(engine_socket(EngineRuntime::Docker, None, 0, xdg), None);
    assert_eq!(
        engine_socket(EngineRuntime::Podman, None, 0, xdg).as_deref(),
        Some("/run/podman/podman.sock")
    );
    assert_eq!(
        engine_socket(EngineRuntime::Podman, None, 1000, xdg).as_deref(),
        Some("/run/user/1000/podman/podman.sock")
    );
    assert_eq!(
        engine_socket(EngineRuntime::Podman, None, 1001, None).as_deref(),
        Some("/run/user/1001/podman/podman.sock")
    );
    assert_eq!(
        engine_socket(EngineRuntime::Podman, None, 1001, Some(Path::new("relative"))).as_deref(),
        Some("/run/user/1001/podman/podman.sock")
    );
    for rt in [EngineRuntime::Docker, EngineRuntime::Podman] {
        assert_eq!(engine_socket(rt, Some("unix:///tmp/x.sock"), 1000, xdg), None);
    }
    assert_eq!(
        engine_socket(EngineRuntime::Podman, Some(" "), 0, xdg).as_deref(),
        Some("/run/podman/podman.sock"),
        "an empty DOCKER_HOST is unset"
    );
    assert!("docker".parse::<EngineRuntime>().is_ok());
    let err = "containerd".parse::<EngineRuntime>().expect_err("refused");
    assert!(err.contains("use docker or podman"), "{err}");
}

#[test]
fn references() {
    let s = |r: &str| split_reference(r);
    assert_eq!(
        s("127.0.0.1:5000/test/app:v1"),
        ("127.0.0.1:5000/test/app".into(), "v1".into())
    );
    assert_eq!(
        s("127.0.0.1:5000/test/app"),
        ("127.0.0.1:5000/test/app".into(), "latest".into())
    );
    assert_eq!(
        s("ghcr.io/a/b@sha256:00"),
        ("ghcr.io/a/b".into(), "sha256:00".into())
    );
    assert_eq!(s("nginx:1.25"), ("nginx".into(), "1.25".into()));
    assert!(restart_policy("on-failure:3").is_ok());
    assert_eq!(registry_host("ghcr.io/linyows/myapp:v1"), "ghcr.io");
    assert_eq!(
        registry_host("127.0.0.1:5000/test/app@sha256:ab"),
        "127.0.0.1:5000"
    );
    assert_eq!(registry_host("localhost/app"), "localhost");
    assert_eq!(registry_host("library/nginx"), "docker.io");
    assert_eq!(registry_host("nginx"), "docker.io");
    assert!(restart_policy("sometimes").is_err());
}
