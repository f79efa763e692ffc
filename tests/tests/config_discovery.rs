//! Where config.toml is found: `--config`, else `$ARCLLM_CONFIG`, else `./arcllm.toml`, else
//! `$XDG_CONFIG_HOME/arcllm/config.toml` (XDG defaulting to `~/.config`), else the embedded
//! default. One test in its own binary: it changes the process's environment and working
//! directory, which no other test may see.

use std::path::{Path, PathBuf};

use arcllm::config::{Config, ConfigError};

fn write(path: &Path, provider: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("[defaults]\nprovider = \"{provider}\"\n")).unwrap();
    path.to_path_buf()
}

fn found() -> Option<(PathBuf, &'static str)> {
    Config::locate(None).expect("locate").map(|l| (l.path, l.rule))
}

#[test]
fn each_rule_is_tried_in_order_and_the_first_match_wins() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    std::env::set_current_dir(&cwd).unwrap();
    std::env::remove_var("ARCLLM_CONFIG");
    std::env::set_var("HOME", root.path().join("home"));
    std::env::set_var("XDG_CONFIG_HOME", root.path().join("xdg"));

    // Nothing anywhere: the embedded default.
    assert_eq!(found(), None);
    assert_eq!(Config::discover(None).unwrap().file, None);

    // ~/.config, when XDG_CONFIG_HOME is unset or empty.
    let home = write(&root.path().join("home/.config/arcllm/config.toml"), "openai");
    std::env::set_var("XDG_CONFIG_HOME", "");
    assert_eq!(found(), Some((home.clone(), "XDG_CONFIG_HOME")));
    assert_eq!(Config::discover(None).unwrap().provider, "openai");
    // $XDG_CONFIG_HOME when set, instead of ~/.config.
    std::env::set_var("XDG_CONFIG_HOME", root.path().join("xdg"));
    assert_eq!(found(), None, "XDG_CONFIG_HOME is set: ~/.config is not looked at");
    let xdg = write(&root.path().join("xdg/arcllm/config.toml"), "groq");
    assert_eq!(found(), Some((xdg, "XDG_CONFIG_HOME")));

    // ./arcllm.toml before the XDG file.
    write(&cwd.join("arcllm.toml"), "anthropic");
    assert_eq!(found(), Some((PathBuf::from("arcllm.toml"), "./arcllm.toml")));
    assert_eq!(Config::discover(None).unwrap().provider, "anthropic");

    // $ARCLLM_CONFIG before that; an empty one counts as unset; one naming nothing is an error.
    let named = write(&root.path().join("named.toml"), "mistral");
    std::env::set_var("ARCLLM_CONFIG", "");
    assert_eq!(found().unwrap().1, "./arcllm.toml");
    std::env::set_var("ARCLLM_CONFIG", &named);
    assert_eq!(found(), Some((named.clone(), "ARCLLM_CONFIG")));
    std::env::set_var("ARCLLM_CONFIG", root.path().join("absent.toml"));
    let error = Config::discover(None).unwrap_err();
    assert!(matches!(error, ConfigError::Missing { rule: "ARCLLM_CONFIG", .. }), "{error}");
    assert!(error.to_string().contains("absent.toml"), "{error}");

    // --config before everything.
    let explicit = write(&root.path().join("explicit.toml"), "openai");
    let config = Config::discover(Some(&explicit)).unwrap();
    assert_eq!((config.file.as_deref(), config.provider.as_str()), (Some(explicit.as_path()), "openai"));
}
