//! The provider files shipped inside the binary (`host/providers/*.toml`).

/// `(name, file name, text)` of every built-in provider.
pub const BUILTIN: &[(&str, &str, &str)] = &[
    ("anthropic", "anthropic.toml", include_str!("../../providers/anthropic.toml")),
    ("openai", "openai.toml", include_str!("../../providers/openai.toml")),
    ("ollama", "ollama.toml", include_str!("../../providers/ollama.toml")),
    ("vllm", "vllm.toml", include_str!("../../providers/vllm.toml")),
    ("groq", "groq.toml", include_str!("../../providers/groq.toml")),
    ("together", "together.toml", include_str!("../../providers/together.toml")),
    ("deepseek", "deepseek.toml", include_str!("../../providers/deepseek.toml")),
    ("mistral", "mistral.toml", include_str!("../../providers/mistral.toml")),
    ("fireworks", "fireworks.toml", include_str!("../../providers/fireworks.toml")),
];
