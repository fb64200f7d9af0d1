//! Tests of the settings as a whole: app names, defaults, the keys that combine, and the
//! registry and hook values resolved at load.

use super::*;

#[test]
fn app_names() {
    assert_eq!(
        app_name_from_registry("ghr://linyows/myapp?pre-release=true"),
        "myapp"
    );
    assert_eq!(app_name_from_registry("file:///srv/releases/web/"), "web");
    assert!(validate_app_name("my-app_1.0").is_ok());
    assert!(validate_app_name("../x").is_err());
    assert!(validate_app_name("").is_err());
}

#[test]
fn flags_override_files_and_unimplemented_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("app.toml");
    std::fs::write(&cfg, "registry = \"file:///srv/rel\"\ninterval = 30\n").unwrap();
    let mut sources = Sources {
        config: Some(cfg.clone()),
        ..Default::default()
    };
    sources.flags.interval = Some(crate::units::DurationValue(Duration::from_secs(5)));
    sources.flags.root = Some(tmp.path().to_path_buf());
    let s = load("app", &sources).unwrap();
    assert_eq!(s.interval, Duration::from_secs(5));
    assert_eq!(s.root, tmp.path());
    assert_eq!(s.cache_dir, tmp.path().join(".dewy/cache"));
    sources.flags.calver = Some("YYYY.0M.MICRO".into());
    let s = load("app", &sources).unwrap();
    assert_eq!(s.registry, "file:///srv/rel?calver=YYYY.0M.MICRO");
    sources.flags.calver = Some("v.x".into());
    let err = load("app", &sources).unwrap_err().to_string();
    assert!(err.contains("invalid calver format \"v.x\""), "{err}");
    sources.flags.calver = None;
    sources.flags.notifier = Some(vec!["teams://x".into()]);
    let err = load("app", &sources).unwrap_err().to_string();
    assert!(
        err.contains("teams://x") && err.contains("unknown scheme"),
        "{err}"
    );
    sources.flags.notifier = Some(vec!["webhook+http://127.0.0.1:9/x".into()]);
    sources.flags.metrics_listen = Some("0.0.0.0:9101".into());
    let err = load("app", &sources).unwrap_err().to_string();
    assert!(err.contains("loopback"), "{err}");
    sources.flags.metrics_listen = Some("127.0.0.1:9101".into());
    let s = load("app", &sources).unwrap();
    assert_eq!(s.notifiers.len(), 1);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
}

#[test]
fn verify_keys_and_min_age() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app.toml");
    let key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
    let text = format!("registry = \"file:///srv/rel\"\nverify = [\"minisign:{key}\"]\nmin-age = \"1h\"\n");
    let s = from_text("app", &path, &text).unwrap();
    assert_eq!(s.verify.len(), 1);
    assert_eq!(s.verify[0].kind(), crate::signature::KeyKind::Minisign);
    assert_eq!(s.min_age, Some(Duration::from_secs(3600)));
    let shown = toml::to_string(&s).unwrap();
    assert!(
        shown.contains(&format!("verify = [\"minisign:{key}\"]")),
        "{shown}"
    );
    assert!(shown.contains("min-age = \"1h\""), "{shown}");

    let s = from_text("app", &path, "registry = \"file:///srv/rel\"\nmin-age = 0\n").unwrap();
    assert_eq!(s.min_age, None);
    assert!(s.verify.is_empty());
    assert!(!toml::to_string(&s).unwrap().contains("min-age"));
    let err = from_text(
        "app",
        &path,
        "registry = \"file:///srv/rel\"\nmin-age = \"31d\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("min-age = 31d is out of range"), "{err}");

    let missing = tmp.path().join("absent.pub");
    let text = format!(
        "registry = \"file:///srv/rel\"\nverify = [\"minisign:{key}\", \"cosign:{}\"]\n",
        missing.display()
    );
    let err = from_text("app", &path, &text).unwrap_err().to_string();
    assert!(
        err.contains(&format!("verify key \"cosign:{}\"", missing.display())),
        "{err}"
    );
    let text = format!("registry = \"file:///srv/rel\"\nverify = [\"minisign:{key}\", \"minisign:{key}\"]\n");
    let err = from_text("app", &path, &text).unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");

    // The watcher leaves the keys unread.
    std::fs::write(
        &path,
        "registry = \"file:///srv/rel\"\nverify = [\"credential:absent\"]\n",
    )
    .unwrap();
    let sources = Sources {
        config: Some(path.clone()),
        ..Default::default()
    };
    let err = load("app", &sources).unwrap_err().to_string();
    assert!(err.contains("credential:absent"), "{err}");
    let sources = Sources {
        skip_keys: true,
        ..sources
    };
    assert!(load("app", &sources).unwrap().verify.is_empty());
}
