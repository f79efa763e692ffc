//! A third-party-style module: tags each response with its configured `tag` (and its
//! position, so a test can see the stacking order), and can rewrite the request by
//! appending `suffix` to the last user message.

use std::sync::OnceLock;

use arcllm_module_sdk::config::Config;
use arcllm_module_sdk::{export, inner, Content, Error, Guest, ModuleGuest, Request, Response, Role};

struct Settings {
    tag: String,
    suffix: Option<String>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct Tag;

impl Guest for Tag {
    fn invoke(mut request: Request) -> Result<Response, Error> {
        let settings = SETTINGS.get().expect("configured before use");
        if let Some(suffix) = &settings.suffix {
            if let Some(message) = request.messages.iter_mut().rev().find(|m| m.role == Role::User) {
                if let Content::Text(text) = &mut message.content {
                    text.push_str(suffix);
                }
            }
        }
        let mut response = inner::invoke(&request)?;
        response.add_metadata("tag", &settings.tag);
        Ok(response)
    }
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for Tag {
    fn configure(config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        config.deny_unknown(&["tag", "suffix"])?;
        let text = |key: &str| {
            config.get(key).map(|v| v.as_str().map(str::to_owned).ok_or(format!("{key} must be a string")))
        };
        let tag = text("tag").ok_or("tag is required")??;
        let suffix = text("suffix").transpose()?;
        let _ = SETTINGS.set(Settings { tag, suffix });
        Ok(())
    }
}

export!(Tag);
